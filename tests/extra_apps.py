"""Extra Flask apps for tests that need a configuration other than the session app's.

`create_app` repoints process-wide globals (the peewee proxy in `api.store`, the
Redis settings in `api.redis_conn`, the active settings in `api.config`, the
`quiver` log level). `extra_apps` builds
apps on demand and, when the test ends, puts those globals back exactly as the
session app left them, so tests that run afterwards are not affected.
`fresh_database_url` gives an empty database of the same kind (SQLite or
PostgreSQL) as the session's, for tests that need a clean slate.
"""

import logging
import os
from contextlib import contextmanager

from api import config, create_app, migrate, redis_conn, store
from api.services import record_cache
from tests import backends


def _dispose(database) -> None:
    if database is None:
        return
    if not database.is_closed():
        database.close()
    close_all = getattr(database, "close_all", None)
    if close_all is not None:
        close_all()


@contextmanager
def extra_apps():
    """Yield `build(overrides) -> app`; restore the session's globals afterwards."""
    saved_db = store.db.obj
    saved_redis = redis_conn._settings
    saved_settings = getattr(config, "_active", None)
    quiver_log = logging.getLogger("quiver")
    saved_level = quiver_log.level
    built = []

    def build(overrides: dict, migrate_schema: bool = False):
        app = create_app({"LOG_LEVEL": "WARNING", **overrides})
        built.append(store.db.obj)
        if migrate_schema:
            with app.app_context():
                migrate.upgrade()
        return app

    try:
        yield build
    finally:
        for database in built:
            if database is not saved_db:
                _dispose(database)
        store.db.initialize(saved_db)
        redis_conn.configure(saved_redis)
        if hasattr(config, "_active"):
            config._active = saved_settings
        if saved_settings is not None:
            record_cache.configure(saved_settings)
        quiver_log.setLevel(saved_level)


@contextmanager
def fresh_database_url(tmp_path):
    """The URL of an empty database: a new PostgreSQL schema, or a new SQLite file."""
    pg_base = os.environ.get("TEST_DATABASE_URL")
    if not pg_base:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url, schema = backends.postgres_schema_url(pg_base)
    try:
        yield url
    finally:
        backends.drop_postgres_schema(pg_base, schema)
