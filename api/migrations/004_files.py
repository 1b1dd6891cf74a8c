"""Files: content-addressed blobs with reference counts, file records, tus uploads in progress."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Blob(pw.Model):
        sha256 = pw.CharField(primary_key=True, max_length=64)
        size = pw.BigIntegerField()
        refs = pw.IntegerField(default=0)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "blobs"

    @migrator.create_model
    class File(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        task_id = pw.CharField(max_length=40, null=True)
        filename = pw.CharField(max_length=255)
        size = pw.BigIntegerField()
        content_type = pw.CharField(max_length=100)
        sha256 = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "files"

    @migrator.create_model
    class TusUpload(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account_id = pw.CharField(max_length=40)
        length = pw.BigIntegerField()
        offset = pw.BigIntegerField(default=0)
        metadata = pw.TextField()
        file_id = pw.CharField(max_length=40, null=True)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()

        class Meta:
            table_name = "tus_uploads"

    migrator.sql('CREATE INDEX files_account_created ON "files" (account_id, created_at, id)')
    migrator.sql('CREATE INDEX files_account_task ON "files" (account_id, task_id)')
    migrator.sql('CREATE INDEX files_sha256 ON "files" (sha256)')
    migrator.sql('CREATE INDEX tus_expires ON "tus_uploads" (expires_at)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table in ("tus_uploads", "files", "blobs"):
        migrator.remove_model(table)
