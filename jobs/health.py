"""A trivial job proving the worker wiring: Redis reaches the worker, the worker reaches the database."""

from api.services import database


def ping(token: str) -> dict:
    """Echo `token` and report that the database answered."""
    with database.connection():
        database.ping()
    return {"pong": token, "database": "ok"}
