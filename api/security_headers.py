"""Response headers every response gets: no MIME sniffing, no framing, no referrer, no caching of API data.

API responses default to `Cache-Control: no-store` (they carry account data,
and some carry secrets shown once: new API keys, webhook secrets); routes that
set their own caching (file downloads, docs assets) keep theirs. Applied by
`api.http_layer` to every HTTP response, on its raw header list.
"""

DEFAULTS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"))
UNCACHED_TYPES = ("application/json", "text/event-stream")


def complete(headers: list[tuple[str, str]], names: set[str]) -> None:
    """Add to `headers` (a WSGI header list, whose lower-cased names are `names`) the
    defaults the response does not set itself."""
    for name, value in DEFAULTS:
        if name.lower() not in names:
            headers.append((name, value))
    if "cache-control" not in names:
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
        if content_type.partition(";")[0].strip().lower() in UNCACHED_TYPES:
            headers.append(("Cache-Control", "no-store"))
