"""Unique fields compare casefolded on every backend: `users.email_key` carries the index.

SQLite's `lower()` folds ASCII only, so `Émile@x` and `émile@x` could both be stored
there. The key column holds Python's `casefold()` of the email on both backends, and
the unique index moves to it. Existing rows get their keys here; should two of them
already collide (stored before this migration on SQLite), the later one's key is made
unique with its id, so the migration never fails and no row is lost.
"""

import peewee as pw
from peewee_migrate import Migrator


def _fill_keys(database: pw.Database) -> None:
    rows = database.execute_sql(
        'SELECT "id", "account_id", "email" FROM "users" ORDER BY "created_at", "id"').fetchall()
    seen, updates = set(), []
    for user_id, account_id, email in rows:
        key = email.casefold()
        if (account_id, key) in seen:
            key = f"{key}#{user_id}"
        seen.add((account_id, key))
        updates.append((key, user_id))
    param = database.param
    sql = f'UPDATE "users" SET "email_key" = {param} WHERE "id" = {param}'
    for key, user_id in updates:
        database.execute_sql(sql, (key, user_id))


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql('ALTER TABLE "users" ADD COLUMN "email_key" VARCHAR(254)')
    migrator.run(_fill_keys, database)
    migrator.sql("DROP INDEX users_account_email")
    migrator.sql('CREATE UNIQUE INDEX users_account_email_key ON "users" (account_id, email_key)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql("DROP INDEX users_account_email_key")
    migrator.sql('CREATE UNIQUE INDEX users_account_email ON "users" (account_id, lower(email))')
    migrator.sql('ALTER TABLE "users" DROP COLUMN "email_key"')
