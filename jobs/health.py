"""A trivial job proving the worker wiring: Redis reaches the worker, the worker reaches the database."""

from api.store import db


def ping(token: str) -> dict:
    """Echo `token` and report that the database answered."""
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()
    return {"pong": token, "database": "ok"}
