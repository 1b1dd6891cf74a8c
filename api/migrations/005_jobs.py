"""Long-running jobs (exports and file imports): status, progress, result."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Job(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        type = pw.CharField(max_length=20)
        entity = pw.CharField(max_length=40)
        status = pw.CharField(max_length=20)
        params = pw.TextField()
        progress_done = pw.BigIntegerField(default=0)
        progress_total = pw.BigIntegerField(null=True)
        result = pw.TextField(null=True)
        error = pw.TextField(null=True)
        attempts = pw.IntegerField(default=0)
        cancel_requested = pw.BooleanField(default=False)
        created_at = pw.DateTimeField()
        enqueued_at = pw.DateTimeField(null=True)
        started_at = pw.DateTimeField(null=True)
        heartbeat_at = pw.DateTimeField(null=True)
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "jobs"

    migrator.sql('CREATE INDEX jobs_account_created ON "jobs" (account_id, created_at, id)')
    migrator.sql('CREATE INDEX jobs_status_heartbeat ON "jobs" (status, heartbeat_at)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("jobs")
