"""Response headers every response gets: no MIME sniffing, no framing, no referrer, no caching of API data.

API responses default to `Cache-Control: no-store` (they carry account data,
and some carry secrets shown once: new API keys, webhook secrets); routes that
set their own caching (file downloads, docs assets) keep theirs.
"""


def init_app(app) -> None:
    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if "Cache-Control" not in headers and response.mimetype in (
                "application/json", "text/event-stream"):
            headers["Cache-Control"] = "no-store"
        return response
