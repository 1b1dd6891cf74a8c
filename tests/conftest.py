"""Fixtures: one app per test session over a real database and Redis; a fresh account per test."""

import logging
import os
from pathlib import Path

import pytest
import redis

from api import create_app, migrate
from api.models import ApiKey
from api.services import accounts
from tests import backends
from tests.procs import ROOT, free_port, start_gunicorn, stop_process, wait_for  # noqa: F401

pytest_plugins = ["tests.browser"]  # the `chromium` and `browser` fixtures

BASE = "/api/v1"
GENEROUS_LIMIT = "100000/minute"


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def backend_env(var_dir):
    """Environment variables naming the database and Redis of this test session."""
    pg_base = os.environ.get("TEST_DATABASE_URL")
    schema = None
    if pg_base:
        database_url, schema = backends.postgres_schema_url(pg_base)
    else:
        database_url = f"sqlite:///{var_dir / 'test.db'}"
    redis_url = backends.test_redis_url(var_dir)
    redis.Redis.from_url(redis_url).flushdb()
    yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "VAR_DIR": str(var_dir)}
    redis.Redis.from_url(redis_url).flushdb()
    if schema:
        backends.drop_postgres_schema(pg_base, schema)


@pytest.fixture(scope="session")
def app(backend_env):
    app = create_app({**backend_env, "LOG_LEVEL": "WARNING"})
    app.config["TESTING"] = True
    with app.app_context():
        migrate.upgrade()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


class ApiClient:
    """The Flask test client with a key and the `/api/v1` prefix applied."""

    def __init__(self, client, key: str | None):
        self.client = client
        self.key = key

    def headers(self, extra=None) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, headers=None, **kwargs):
        url = path if path.startswith(("/api/", "/healthz", "/readyz")) else BASE + path
        return self.client.open(url, method=method, headers=self.headers(headers), **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def create(self, entity_path: str, **fields) -> dict:
        """POST a record and return its JSON (asserting 201)."""
        response = self.post(f"/{entity_path}", json=fields)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["data"]


class Account:
    """A fresh account with an admin key; `key(scopes)` makes more keys.

    The admin key (`account.api`) has a generous rate limit of its own so that
    tests which poll do not trip the default; keys from `key()` get the default.
    """

    def __init__(self, app, client):
        self.app = app
        self.client = client
        with app.app_context():
            account, secret = accounts.create_account("test")
            ApiKey.update(rate_limit=GENEROUS_LIMIT).where(ApiKey.account_id == account.id).execute()
        self.id = account.id
        self.api = ApiClient(client, secret)

    def key(self, *scopes: str) -> ApiClient:
        with self.app.app_context():
            _, secret = accounts.create_key(self.id, "test", list(scopes))
        return ApiClient(self.client, secret)


@pytest.fixture
def account(app, client) -> Account:
    return Account(app, client)


@pytest.fixture
def other_account(app, client) -> Account:
    return Account(app, client)


@pytest.fixture
def api(account) -> ApiClient:
    return account.api


def plain_sql(statement: str) -> str:
    """The SQL a statement runs: for the `EXECUTE` of a prepared one (PostgreSQL's hot reads,
    `api.store.PooledPostgres`), the statement it prepared."""
    from api import store

    if statement.startswith("EXECUTE "):
        return store.PREPARED[statement.split()[1]]
    return statement


class QueryCounter(logging.Handler):
    """Counts the SQL statements peewee executes while installed (and keeps them)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0
        self.statements: list[tuple[str, tuple]] = []

    def emit(self, record):
        self.count += 1
        if isinstance(record.msg, tuple):
            self.statements.append(record.msg)


@pytest.fixture
def count_queries():
    """Use as `with count_queries() as counter: ...; counter.count`."""
    from contextlib import contextmanager

    @contextmanager
    def counting():
        logger = logging.getLogger("peewee")
        counter = QueryCounter()
        previous = logger.level
        logger.addHandler(counter)
        logger.setLevel(logging.DEBUG)
        try:
            yield counter
        finally:
            logger.removeHandler(counter)
            logger.setLevel(previous)

    return counting


@pytest.fixture(scope="session")
def live_server(app, backend_env, var_dir):
    """A real gunicorn serving the test database; yields its base URL. Its log (warnings
    and errors) is `live-server.log` in the session's var directory."""
    port = free_port()
    env = {**os.environ, **backend_env, "WEB_CONCURRENCY": "2", "WEB_THREADS": "4",
           "LOG_LEVEL": "WARNING"}
    process = start_gunicorn(env, port, log=var_dir / "live-server.log")
    yield f"http://127.0.0.1:{port}"
    stop_process(process)
