"""A request's database connection: opened lazily by its first query (`api.store`), given
back to the pool at teardown, so routes that need no database (`/healthz`) never touch it."""

from flask import request

from api.batch_environ import SUBREQUEST
from api.store import db


def init_app(app) -> None:
    """Give the request's connection back (to the pool) at teardown.

    A batch's sub-requests share their parent's connection (and, for an atomic
    batch, its transaction), so they leave it open.
    """

    @app.teardown_request
    def _close_connection(exc):
        if request.environ.get(SUBREQUEST):
            return
        if not db.is_closed():
            db.close()
