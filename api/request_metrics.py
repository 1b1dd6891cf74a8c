"""HTTP request metrics: a clock started before the request's hooks and one `after_request`
hook (see `api.metrics`).

Each request is counted by route template (Flask's `url_rule` with its converters left out,
`/api/v1/tasks/<record_id>`; `unmatched` when no route matched: a 404 or 405 on an unknown
path), method and status, and timed from before the first `before_request` hook to the
last `after_request` (for a stream, to its headers). Not counted: the scrape itself
(`/metrics`: so scraping does not change what it reports), a batch's sub-requests (the
batch is the one HTTP request), and gunicorn's own refusals (400, 414, 431), which never
reach the app. The clock starts in a URL value preprocessor, which Flask runs before every
`before_request` hook (so a 413 or 429 decided there is timed too); the `after_request`
hook is registered first, so it runs last, on the final status.
"""

import functools
import re
import time

from flask import g, request

from api import metrics
from api.batch_environ import SUBREQUEST

UNMATCHED = "unmatched"
SCRAPE_ENDPOINT = "metrics.scrape"
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")


@functools.lru_cache(maxsize=1024)
def route_template(rule: str) -> str:
    """`/api/v1/tasks/<string:record_id>` → `/api/v1/tasks/<record_id>`."""
    return _CONVERTER.sub(r"<\1>", rule)


def init_app(app) -> None:
    """Time and count every request."""
    @app.url_value_preprocessor
    def _start(endpoint, view_args):
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response):
        if SUBREQUEST in request.environ:
            return response
        rule = request.url_rule
        if rule is None:
            route = UNMATCHED
        elif rule.endpoint == SCRAPE_ENDPOINT:
            return response
        else:
            route = route_template(rule.rule)
        started = g.get("metrics_started")
        metrics.request_served(route, request.method, response.status_code,
                               time.perf_counter() - started if started else 0.0)
        return response
