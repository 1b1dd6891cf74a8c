"""`/` and `/live`: a small page that lists tasks and updates them live from the event stream.

Plain HTML and JavaScript, no external assets; the key is typed into the page
(or passed as `#key=sk_…`) and kept in the tab's sessionStorage only.
"""

from pathlib import Path

from flask import Blueprint, Response

from api.auth import public

PAGE = Path(__file__).resolve().parent.parent / "static" / "live.html"

blp = Blueprint("live", __name__)


@blp.route("/")
@blp.route("/live")
@public
def live_page():
    response = Response(PAGE.read_bytes(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'")
    response.headers["Cache-Control"] = "no-cache"
    return response
