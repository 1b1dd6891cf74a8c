"""Tasks: the work items; `completedAt` follows `status`."""

import peewee
from marshmallow import validate

from api.entities.base import Entity, RecordModel, RecordSchema, Relation
from api.fields import Ref, Text, Timestamp
from api.timeutil import utcnow

STATUSES = ("todo", "in_progress", "completed")
PRIORITIES = ("low", "medium", "high")


class Task(RecordModel):
    title = peewee.CharField(max_length=200)
    description = peewee.TextField(null=True)
    status = peewee.CharField(max_length=20, default="todo")
    priority = peewee.CharField(max_length=20, default="medium")
    project_id = peewee.CharField(max_length=40, null=True)
    assignee_id = peewee.CharField(max_length=40, null=True)
    due_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "tasks"


class TaskSchema(RecordSchema):
    title = Text(required=True, validate=validate.Length(1, 200))
    description = Text(allow_none=True, load_default=None, validate=validate.Length(max=10000))
    status = Text(load_default="todo", validate=validate.OneOf(STATUSES))
    priority = Text(load_default="medium", validate=validate.OneOf(PRIORITIES))
    projectId = Ref("project", attribute="project_id", allow_none=True, load_default=None)
    assigneeId = Ref("user", attribute="assignee_id", allow_none=True, load_default=None)
    dueAt = Timestamp(attribute="due_at", allow_none=True, load_default=None)
    completedAt = Timestamp(attribute="completed_at", dump_only=True)


def track_completion(values: dict, current: dict | None) -> None:
    """Set `completed_at` when the status becomes completed; clear it when it leaves."""
    if "status" not in values:
        return
    was_completed = current is not None and current["status"] == "completed"
    if values["status"] == "completed" and not was_completed:
        values["completed_at"] = utcnow()
    elif values["status"] != "completed":
        values["completed_at"] = None


ENTITY = Entity(
    name="task",
    path="tasks",
    prefix="tsk",
    model=Task,
    schema=TaskSchema,
    sortable=("createdAt", "updatedAt", "title", "status", "priority", "dueAt"),
    searchable=("title", "description"),
    relations=(
        Relation("project", "project_id", "project"),
        Relation("assignee", "assignee_id", "user", reverse="assignedTasks"),
    ),
    before_write=track_completion,
)
