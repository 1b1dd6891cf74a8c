"""`/console`: the operator console, a browser client of the public API (static files only).

The page and its ES modules and stylesheet are served without a key; every data call the
page makes carries the key the operator typed in (kept in the tab's `sessionStorage`).
The content security policy allows nothing but this origin: no inline script or style.
"""

from pathlib import Path

from flask import Blueprint, send_from_directory

from api.auth import public

ASSETS = Path(__file__).resolve().parent.parent / "static" / "console"
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

blp = Blueprint("console", __name__)


def _served(response):
    """The response with the console's policy, revalidated on every load."""
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/console")
@blp.route("/console/")
@public
def console_page():
    """The console's one page; its hash names the view (`#/records/tasks`)."""
    return _served(send_from_directory(ASSETS, "index.html", max_age=0))


@blp.route("/console/<path:filename>")
@public
def console_asset(filename):
    """A stylesheet or ES module of the console."""
    return _served(send_from_directory(ASSETS, filename, max_age=0))
