"""Idempotency keys: the first response to each (account, key), kept 24 hours."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class IdempotencyRecord(pw.Model):
        id = pw.AutoField()
        account_id = pw.CharField(max_length=40)
        key = pw.CharField(max_length=255)
        fingerprint = pw.CharField(max_length=64)
        state = pw.CharField(max_length=20)
        response_status = pw.IntegerField(null=True)
        response_headers = pw.TextField(null=True)
        response_body = pw.BlobField(null=True)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()

        class Meta:
            table_name = "idempotency_keys"

    migrator.sql('CREATE UNIQUE INDEX idempotency_account_key ON "idempotency_keys" (account_id, key)')
    migrator.sql('CREATE INDEX idempotency_expires ON "idempotency_keys" (expires_at)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("idempotency_keys")
