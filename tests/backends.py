"""Which real database and Redis the tests use.

`TEST_DATABASE_URL` selects PostgreSQL (each run gets a schema of its own,
dropped at the end); otherwise a fresh SQLite file. Redis is `TEST_REDIS_URL`,
else the local server on 127.0.0.1:6379 (db 15), else the embedded server.
Run as a script, prints the URL of a reachable local PostgreSQL (for `make test`).
"""

import os
import uuid
from urllib.parse import quote

import psycopg2
import redis

LOCAL_POSTGRES = "postgresql://127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/15"


def postgres_answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except psycopg2.Error:
        return False


def redis_answers(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError):
        return False


def postgres_schema_url(base_url: str) -> tuple[str, str]:
    """A fresh schema in the database at `base_url`, and a URL whose connections use it."""
    schema = f"quiver_test_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE SCHEMA "{schema}"')
    conn.close()
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}", schema


def drop_postgres_schema(base_url: str, schema: str) -> None:
    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    conn.cursor().execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


def test_redis_url(var_dir) -> str:
    """A Redis URL for tests; starts the embedded server when no other answers."""
    url = os.environ.get("TEST_REDIS_URL") or LOCAL_REDIS
    if redis_answers(url):
        return url
    from api import embedded_redis

    return embedded_redis.ensure_running(var_dir) + "?db=15"


if __name__ == "__main__":
    url = os.environ.get("TEST_DATABASE_URL") or LOCAL_POSTGRES
    if postgres_answers(url):
        print(url)
