"""Events (the outbox), webhook subscriptions and their delivery attempts."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Event(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        type = pw.CharField(max_length=100)
        created_at = pw.DateTimeField()
        data = pw.TextField()
        previous = pw.TextField(null=True)

        class Meta:
            table_name = "events"

    @migrator.create_model
    class Webhook(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        url = pw.CharField(max_length=2048)
        events = pw.TextField()
        description = pw.TextField(null=True)
        secret = pw.CharField(max_length=200)
        previous_secret = pw.CharField(max_length=200, null=True)
        previous_secret_expires_at = pw.DateTimeField(null=True)
        active = pw.BooleanField(default=True)
        disabled_reason = pw.CharField(max_length=200, null=True)
        failing_since = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "webhooks"

    @migrator.create_model
    class WebhookDelivery(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        webhook = pw.ForeignKeyField(Webhook, column_name="webhook_id", index=False,
                                     on_delete="CASCADE")
        event = pw.ForeignKeyField(Event, column_name="event_id", index=False, on_delete="CASCADE")
        attempt = pw.IntegerField(default=1)
        status = pw.CharField(max_length=20, default="pending")
        response_status = pw.IntegerField(null=True)
        response_body = pw.TextField(null=True)
        duration_ms = pw.IntegerField(null=True)
        error = pw.TextField(null=True)
        next_attempt_at = pw.DateTimeField(null=True)
        lease_token = pw.CharField(max_length=40, null=True)
        locked_until = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "webhook_deliveries"

    migrator.sql('CREATE INDEX events_account_id ON "events" (account_id, id)')
    migrator.sql('CREATE INDEX events_account_type ON "events" (account_id, type, id)')
    migrator.sql('CREATE INDEX webhooks_account ON "webhooks" (account_id, active)')
    migrator.sql('CREATE INDEX deliveries_webhook ON "webhook_deliveries" (webhook_id, id)')
    migrator.sql('CREATE INDEX deliveries_event ON "webhook_deliveries" (event_id)')
    migrator.sql('CREATE INDEX deliveries_due ON "webhook_deliveries" (status, next_attempt_at)')
    migrator.sql('CREATE INDEX deliveries_lease ON "webhook_deliveries" (lease_token)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table in ("webhook_deliveries", "webhooks", "events"):
        migrator.remove_model(table)
