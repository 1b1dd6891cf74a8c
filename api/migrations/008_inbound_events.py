"""Inbound webhook events: each verified event once per (source, sender's event id)."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class InboundEventRow(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        source = pw.CharField(max_length=40)
        event_id = pw.CharField(max_length=255)
        type = pw.CharField(max_length=200, null=True)
        payload = pw.TextField()
        job_id = pw.CharField(max_length=40, null=True)
        received_at = pw.DateTimeField()

        class Meta:
            table_name = "inbound_events"

    migrator.sql('CREATE UNIQUE INDEX inbound_events_source_event ON "inbound_events" (source, event_id)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("inbound_events")
