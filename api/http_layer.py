"""The outermost WSGI layer: what every HTTP response gets, once per HTTP request.

Around the Flask app (`QuiverFlask.__call__`), one `start_response` wrapper gives each
response its request id (`api.request_log`), the default security headers
(`api.security_headers`), its count and duration in the metrics (`api.request_metrics`)
and its log line. It works on the raw header list WSGI hands over, which costs a
fraction of what four Flask hooks, `g` and werkzeug's `Headers` cost per request.

A batch's sub-requests are dispatched to `app.wsgi_app`, inside this layer: the batch
is one HTTP request, with one id, one log line and one count.
"""

import time

from api import request_log, request_metrics, security_headers


def wrap(wsgi_app, metered: bool):
    """`wsgi_app` inside the layer (`metered`: also count requests in the metrics)."""

    def layer(environ, start_response):
        started = time.perf_counter()
        request_id = request_log.assign_request_id(environ)

        def start(status, headers, exc_info=None):
            names = {name.lower() for name, _ in headers}
            if "x-request-id" not in names:
                headers.append(("X-Request-ID", request_id))
            security_headers.complete(headers, names)
            seconds = time.perf_counter() - started
            code = int(status[:3])
            if metered:
                request_metrics.count(environ, code, seconds)
            request_log.log_request(environ, code, seconds)
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start)

    return layer
