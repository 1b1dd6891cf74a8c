"""Initial schema: accounts, API keys and the four built-in entities, with their indexes."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Account(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        name = pw.CharField(max_length=200)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "accounts"

    @migrator.create_model
    class ApiKey(pw.Model):
        id = pw.CharField(primary_key=True, max_length=40)
        account = pw.ForeignKeyField(Account, column_name="account_id", index=True)
        name = pw.CharField(max_length=200)
        prefix = pw.CharField(max_length=20, index=True)
        key_hash = pw.CharField(max_length=64, unique=True)
        scopes = pw.CharField(max_length=100)
        rate_limit = pw.CharField(max_length=200, null=True)
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField(null=True)
        revoked_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "api_keys"

    def record(table, **columns):
        attrs = {
            "id": pw.CharField(primary_key=True, max_length=40),
            "account": pw.ForeignKeyField(Account, column_name="account_id", index=False),
            "version": pw.IntegerField(default=1),
            "created_at": pw.DateTimeField(),
            "updated_at": pw.DateTimeField(),
            **columns,
            "Meta": type("Meta", (), {"table_name": table}),
        }
        return migrator.create_model(type(table.title(), (pw.Model,), attrs))

    user = record("users", name=pw.CharField(max_length=100), email=pw.CharField(max_length=254))
    project = record("projects", name=pw.CharField(max_length=200),
                     description=pw.TextField(null=True))
    task = record(
        "tasks",
        title=pw.CharField(max_length=200),
        description=pw.TextField(null=True),
        status=pw.CharField(max_length=20, default="todo"),
        priority=pw.CharField(max_length=20, default="medium"),
        project=pw.ForeignKeyField(project, column_name="project_id", null=True, index=False),
        assignee=pw.ForeignKeyField(user, column_name="assignee_id", null=True, index=False),
        due_at=pw.DateTimeField(null=True),
        completed_at=pw.DateTimeField(null=True),
    )
    record(
        "comments",
        task=pw.ForeignKeyField(task, column_name="task_id", index=False),
        author=pw.ForeignKeyField(user, column_name="author_id", null=True, index=False),
        body=pw.TextField(),
    )

    for table in ("users", "projects", "tasks", "comments"):
        migrator.sql(f'CREATE INDEX {table}_account_created ON "{table}" '
                     "(account_id, created_at, id)")
        migrator.sql(f'CREATE INDEX {table}_account_updated ON "{table}" '
                     "(account_id, updated_at, id)")
    migrator.sql('CREATE UNIQUE INDEX users_account_email ON "users" (account_id, lower(email))')
    migrator.sql('CREATE INDEX users_account_name ON "users" (account_id, name)')
    migrator.sql('CREATE INDEX projects_account_name ON "projects" (account_id, name)')
    for column in ("status", "priority", "project_id", "assignee_id", "due_at", "title"):
        migrator.sql(f'CREATE INDEX tasks_account_{column} ON "tasks" (account_id, {column})')
    migrator.sql('CREATE INDEX comments_task ON "comments" (task_id)')
    migrator.sql('CREATE INDEX comments_author ON "comments" (author_id)')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table in ("comments", "tasks", "projects", "users", "api_keys", "accounts"):
        migrator.remove_model(table)
