"""The database as routes, jobs and the worker see it: setup, a connection for work done
outside a request, a liveness ping and which backend runs (for backend-specific SQL)."""

from contextlib import AbstractContextManager

from api import store


def configure(url: str, pool_size: int, prepare: bool = True) -> None:
    """Point the process at the database named by `url` (`DATABASE_URL`)."""
    store.configure(url, pool_size, prepare)


def connection() -> AbstractContextManager:
    """Hold a pooled connection for the block (jobs, the sweeper, a stream's checks); a
    request's own connection is opened on its first query and returned at teardown."""
    return store.db.connection_context()


def ping() -> None:
    """Run `SELECT 1`; raises when the database does not answer."""
    store.db.execute_sql("SELECT 1").fetchone()


def is_postgres() -> bool:
    """True when the configured database is PostgreSQL."""
    return store.is_postgres()
