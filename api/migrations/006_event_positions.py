"""The event log in commit order: each event's `position` in its account's log.

Positions count up from 1 per account, contiguous, in commit order (see
`api/services/events.py`). `event_heads` holds each account's last position;
its row is what commits of one account's events queue on. Existing events are
numbered in id order.
"""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql('ALTER TABLE "events" ADD COLUMN "position" BIGINT')
    migrator.sql('UPDATE "events" SET "position" = ranked.n FROM ('
                 'SELECT "id", ROW_NUMBER() OVER (PARTITION BY "account_id" ORDER BY "id") AS n '
                 'FROM "events") AS ranked WHERE "events"."id" = ranked."id"')
    migrator.sql('CREATE UNIQUE INDEX events_account_position ON "events" (account_id, position)')
    migrator.sql('CREATE TABLE "event_heads" ("account_id" VARCHAR(40) PRIMARY KEY, '
                 '"position" BIGINT NOT NULL)')
    migrator.sql('INSERT INTO "event_heads" ("account_id", "position") '
                 'SELECT "account_id", MAX("position") FROM "events" GROUP BY "account_id"')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql('DROP TABLE "event_heads"')
    migrator.sql('DROP INDEX events_account_position')
    migrator.sql('ALTER TABLE "events" DROP COLUMN "position"')
