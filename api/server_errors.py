"""gunicorn's own refusals in the service's error envelope.

gunicorn answers some requests before the app sees them: a request line over
`limit_request_line` (414), headers over their limits (431), a malformed request
(400). Its default body is an HTML page; `install()` (called from gunicorn.conf.py)
makes it the JSON envelope every other error uses, with an `X-Request-ID`.
"""

import json
import uuid

from gunicorn import util

CODES = {400: "BAD_REQUEST", 403: "FORBIDDEN", 414: "URI_TOO_LONG",
         417: "EXPECTATION_FAILED", 431: "HEADERS_TOO_LARGE", 500: "INTERNAL_ERROR",
         501: "NOT_IMPLEMENTED"}


def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Send `{"success": false, "error", "code"}` and close (gunicorn's signature)."""
    error = reason if status_int >= 500 else f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"success": False, "error": error, "code": CODES.get(status_int, "BAD_REQUEST")},
                      ensure_ascii=True).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-ID: {uuid.uuid4().hex}\r\n"
            "X-Content-Type-Options: nosniff\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    """Route gunicorn's error pages through `write_error` (its workers call `util.write_error`)."""
    util.write_error = write_error
