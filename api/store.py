"""The database: one peewee proxy, configured from `DATABASE_URL`.

SQLite (the embedded default) runs in WAL mode with foreign keys on, a busy
timeout and `BEGIN IMMEDIATE` write transactions, so concurrent writers queue
instead of failing. Both SQLite and PostgreSQL connections are pooled. A connection is opened
lazily on a request's first query and returned at teardown (`api.db_lifecycle`), so
routes that need no database (`/healthz`) never touch it.
"""

import functools
import hashlib
import logging
import re
import threading
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import peewee
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from api import metrics

db = peewee.DatabaseProxy()
log = logging.getLogger("quiver.store")

PAGE_SIZE = 500  # statements or rows per round trip to PostgreSQL

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


def _unicode_lower(value):
    return value.lower() if isinstance(value, str) else value


class PooledPostgres(PooledPostgresqlDatabase):
    """Pooled PostgreSQL connections, handed out without a round trip, that prepare the hot
    reads (`fetch_models`) once per connection.

    playhouse's pool pings each connection as it hands it out (`SELECT 1`): a second round
    trip for every request. Here a connection is handed out as it is. When a statement sent
    outside a transaction (a request's first, or a transaction's `BEGIN`) fails because its
    connection is dead (the server restarted, or ended it), the pool's idle connections,
    likely dead too, are dropped, and the statement is sent again on a new connection.

    Planning a primary-key lookup costs PostgreSQL about as much as running it, so with
    `prepare` (`DB_PREPARE`, on by default) each connection `PREPARE`s such a read on first
    use and then only `EXECUTE`s it. Behind a pooler that hands one client's statements to
    several server connections (PgBouncer's transaction pooling), turn it off.
    """

    def __init__(self, *args, prepare: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.prepare = prepare
        self._prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _is_closed(self, conn) -> bool:
        return bool(conn.closed)

    def execute_sql(self, sql, params=None):
        return self._reconnecting(super().execute_sql, sql, params)

    def begin(self, *args, **kwargs):
        return self._reconnecting(super().begin, *args, **kwargs)

    def execute_prepared(self, sql: str, params: tuple):
        """Run `sql` (with `%s` parameters) as this connection's prepared statement."""
        if not self.prepare:
            return self.execute_sql(sql, params)
        return self._reconnecting(self._execute_prepared, sql, params)

    def _execute_prepared(self, sql: str, params: tuple):
        run = super().execute_sql  # (not `_reconnecting`: a new connection prepares anew)
        name = statement_name(sql)
        prepared = self._prepared.setdefault(self.connection(), set())
        if name not in prepared:
            numbered = iter(range(1, len(params) + 1))
            run(f"PREPARE {name} AS " + re.sub("%s", lambda _: f"${next(numbered)}", sql))
            prepared.add(name)
        return run(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)

    def _reconnecting(self, statement, *args, **kwargs):
        try:
            return statement(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError):
            conn = self._state.conn
            if self.in_transaction() or conn is None or not conn.closed:
                raise
            metrics.database_error("reconnect")
            log.warning("a pooled PostgreSQL connection was dead: the idle ones are replaced")
            self.close()  # the pool drops a closed connection
            self.close_idle()
            return statement(*args, **kwargs)


PREPARED: dict[str, str] = {}  # statement name -> its SQL (the few shapes of `fetch_models`)


@functools.lru_cache(maxsize=256)
def statement_name(sql: str) -> str:
    """The name a connection prepares `sql` under (the same on every connection)."""
    name = "quiver_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
    PREPARED[name] = sql
    return name


def make_database(url: str, pool_size: int = 20, prepare: bool = True) -> peewee.Database:
    """Build a peewee database object for a `sqlite:///…` or `postgresql://…` URL."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        path = parsed.path[1:] if parsed.path.startswith("//") else parsed.path
        path = path or ":memory:"
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        database = PooledSqliteDatabase(
            path, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", timeout=10,
            check_same_thread=False, max_connections=pool_size, stale_timeout=300,
        )
        database.register_function(_unicode_lower, "quiver_lower", 1)
        return database
    if scheme in ("postgres", "postgresql"):
        options = dict(parse_qsl(parsed.query))
        return PooledPostgres(
            parsed.path.lstrip("/"),
            prepare=prepare,
            host=parsed.hostname,
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            max_connections=pool_size,
            stale_timeout=300,
            timeout=10,
            **options,
        )
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parsed.scheme!r}")


def configure(url: str, pool_size: int = 20, prepare: bool = True) -> peewee.Database:
    """Point the shared proxy at the database named by `url`."""
    database = make_database(url, pool_size, prepare)
    db.initialize(database)
    return database


def execute_many(sql: str, rows: list) -> int | None:
    """One statement run for many parameter rows, errors as peewee's; how many rows it
    changed, where the driver can tell (SQLite, or a single row).

    SQLite runs DB-API executemany (a prepared statement, no round trips); on
    PostgreSQL, where psycopg2's executemany costs a round trip per row, the rows
    travel in pages of statements (`execute_batch`).
    """
    with peewee.__exception_wrapper__:
        cursor = db.cursor()
        if is_postgres() and len(rows) > 1:
            from psycopg2.extras import execute_batch

            execute_batch(cursor, sql, rows, page_size=PAGE_SIZE)
            return None
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
        return cursor.rowcount


def insert_rows(model, rows: list[dict], names: list[str] | None = None,
                chunk: int = PAGE_SIZE) -> None:
    """Insert many rows with one prepared INSERT and executemany.

    The columns are `names` (a row without one of them stores NULL there), else
    the first row's keys. Much cheaper than building an `insert_many` query per
    chunk; values go through each field's `db_value` as peewee would. On
    PostgreSQL each chunk is one multi-row INSERT (`execute_values`), one round trip.
    """
    if not rows:
        return
    names = names or list(rows[0])
    fields = [model._meta.fields[name] for name in names]
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    insert = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES '
    for start in range(0, len(rows), chunk):
        values = [[f.db_value(row.get(name)) for name, f in zip(names, fields)]
                  for row in rows[start:start + chunk]]
        if is_postgres():
            from psycopg2.extras import execute_values

            with peewee.__exception_wrapper__:
                execute_values(db.cursor(), insert + "%s", values, page_size=chunk)
        else:
            execute_many(insert + f'({", ".join([db.param] * len(fields))})', values)


def fetch_models(model, where: str, params: tuple, prepared: bool = False) -> list:
    """Instances of `model` for `SELECT <its columns> FROM <its table> WHERE <where>`.

    For hot reads: builds instances straight from the cursor's rows, converting each
    value with its field's `python_value` as peewee would, without peewee's per-query
    column resolution. `prepared`, for a read of one shape run again and again (a record
    by id), lets PostgreSQL plan it once per connection (`PooledPostgres`).
    """
    fields = model._meta.sorted_fields
    instances = []
    execute = getattr(db.obj, "execute_prepared", db.execute_sql) if prepared else db.execute_sql
    for row in execute(_select_sql(model, where), params).fetchall():
        instance = model(__no_default__=True)
        instance.__data__ = {f.name: f.python_value(value) for f, value in zip(fields, row)}
        instances.append(instance)
    return instances


@functools.lru_cache(maxsize=256)
def _select_sql(model, where: str) -> str:
    columns = ", ".join(f'"{f.column_name}"' for f in model._meta.sorted_fields)
    return f'SELECT {columns} FROM "{model._meta.table_name}" WHERE {where}'


def ids_of_account(account_id: str, ids: list):
    """The condition for a table's rows among `ids` that belong to `account_id`.

    On SQLite, which keeps no statistics here, the planner would rather walk an
    `(account_id, …)` index, reading every row of the account, than look the ids
    up by primary key; a unary `+` (SQLite's documented way) keeps the account
    column from choosing an index. PostgreSQL's planner goes by its statistics.
    """
    ids = [i for i in ids if "\x00" not in i]  # no id holds one, and PostgreSQL refuses it
    if not ids:
        return peewee.SQL("1 = 0")  # PostgreSQL refuses `IN ()`
    account = '"account_id"' if is_postgres() else '+"account_id"'
    return peewee.SQL(f'"id" IN ({", ".join([db.param] * len(ids))}) AND {account} = {db.param}',
                      (*ids, account_id))


def fetch_of_account(model, account_id: str, ids: list) -> list:
    """`model`'s rows among `ids` that belong to `account_id` (`ids_of_account`), as
    `fetch_models` builds them, without peewee building the query."""
    condition = ids_of_account(account_id, ids)
    return fetch_models(model, condition.sql, condition.params)


def is_postgres() -> bool:
    """True when the configured database is PostgreSQL."""
    return isinstance(db.obj, peewee.PostgresqlDatabase)


_local = threading.local()
_loaded_ahead: ContextVar[dict | None] = ContextVar("quiver_loaded_ahead", default=None)


@contextmanager
def loaded_ahead(rows: dict):
    """Let `take_loaded` hand out each of `rows` once while the block runs, until a
    write transaction begins (it could change them)."""
    token = _loaded_ahead.set(rows)
    try:
        yield
    finally:
        _loaded_ahead.reset(token)


def take_loaded(key):
    """The row loaded ahead under `key` (see `loaded_ahead`), or None."""
    rows = _loaded_ahead.get()
    return rows.pop(key, None) if rows else None


@contextmanager
def transaction():
    """One write transaction, or a savepoint inside an outer one.

    Every service write runs in here, so an outer caller (an atomic batch, a
    job) can wrap several writes in one transaction. What was `stage`d is
    flushed just before the outermost transaction commits; callbacks registered
    with `on_commit` run once it has committed. Both are dropped with any part
    of it that rolls back. Callbacks registered with `after_transaction` run once
    it has ended, committed or not. Rows loaded ahead are dropped.
    """
    loaded = _loaded_ahead.get()
    if loaded:
        loaded.clear()
    outermost = not db.in_transaction()
    if outermost or not getattr(_local, "active", False):
        _local.callbacks, _local.staged, _local.enders = [], [], []
    marks = len(_local.callbacks), len(_local.staged)
    try:
        with db.atomic() as txn:
            if outermost:
                _local.active = True
            yield txn
            if outermost:
                _flush_staged()
    except BaseException:
        del _local.callbacks[marks[0]:]
        del _local.staged[marks[1]:]
        raise
    finally:
        if outermost:
            _local.active = False
            enders, _local.enders = _local.enders, []
            _run(enders, "after-transaction callback failed")
    if outermost:
        callbacks, _local.callbacks = _local.callbacks, []
        _run(callbacks, "after-commit callback failed")


def _run(callbacks: list, failure: str) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception(failure)


def stage(flush, item) -> None:
    """Hold `item` until the current transaction is about to commit, then hand it, with
    every other item staged for the same `flush`, to `flush(items)` (in staging order),
    inside the transaction: the last statements before COMMIT."""
    if not (db.in_transaction() and getattr(_local, "active", False)):
        raise RuntimeError("stage() needs a transaction() around it")
    _local.staged.append((flush, item))


def _flush_staged() -> None:
    while _local.staged:
        staged, _local.staged = _local.staged, []
        groups: dict = {}
        for flush, item in staged:
            groups.setdefault(flush, []).append(item)
        for flush, items in groups.items():
            flush(items)


WRITE_CONFLICT_CODES = ("40P01", "40001")  # PostgreSQL: deadlock_detected, serialization_failure


def is_write_conflict(exc: BaseException) -> bool:
    """True when PostgreSQL rolled a transaction back for a concurrent one (a deadlock or a
    serialization failure): nothing was written, and the same work may simply run again."""
    causes = (exc, getattr(exc, "orig", None), exc.__context__)  # peewee keeps the driver's as `orig`
    return any(getattr(cause, "pgcode", None) in WRITE_CONFLICT_CODES for cause in causes)


def retried(operation):
    """Decorate a function that runs one transaction: when it is the outermost one and is
    rolled back as a write conflict, run it again (three tries in all)."""

    @functools.wraps(operation)
    def run(*args, **kwargs):
        for attempt in range(3):
            try:
                return operation(*args, **kwargs)
            except peewee.OperationalError as exc:
                if attempt == 2 or db.in_transaction() or not is_write_conflict(exc):
                    raise
                metrics.database_error("retry")
                log.info("write conflict (%s); running the transaction again", exc)

    return run


def after_transaction(callback) -> None:
    """Run `callback` once the current outermost transaction has ended, committed or rolled back."""
    if not (db.in_transaction() and getattr(_local, "active", False)):
        raise RuntimeError("after_transaction() needs a transaction() around it")
    _local.enders.append(callback)


def on_commit(callback) -> None:
    """Run `callback` after the current transaction commits (at once when there is none)."""
    if not db.in_transaction():
        callback()
    elif getattr(_local, "active", False):
        _local.callbacks.append(callback)
    else:
        raise RuntimeError("on_commit() inside a transaction needs a transaction() around it")
