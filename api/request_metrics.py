"""HTTP request metrics: each HTTP request counted and timed once (see `api.metrics`).

Each request is counted by route template (Flask's `url_rule` with its converters left out,
`/api/v1/tasks/<record_id>`; `unmatched` when no route matched: a 404 or 405 on an unknown
path), method and status, and timed by `api.http_layer` from the moment the app gets the
request to its response's headers (for a stream, to its headers). Not counted: the scrape
itself (`/metrics`: so scraping does not change what it reports), a batch's sub-requests
(the batch is the one HTTP request), and gunicorn's own refusals (400, 414, 431), which
never reach the app.
"""

import functools
import re

from api import metrics

UNMATCHED = "unmatched"
SCRAPE_ENDPOINT = "metrics.scrape"
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")


@functools.lru_cache(maxsize=1024)
def route_template(rule: str) -> str:
    """`/api/v1/tasks/<string:record_id>` → `/api/v1/tasks/<record_id>`."""
    return _CONVERTER.sub(r"<\1>", rule)


def count(environ: dict, status: int, seconds: float) -> None:
    """Count the request whose WSGI environ is `environ` (it answered `status` after `seconds`)."""
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    if rule is None:
        route = UNMATCHED
    elif rule.endpoint == SCRAPE_ENDPOINT:
        return
    else:
        route = route_template(rule.rule)
    metrics.request_served(route, environ.get("REQUEST_METHOD", ""), status, seconds)
