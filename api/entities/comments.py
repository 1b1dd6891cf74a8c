"""Comments on tasks; deleting a task deletes its comments."""

import peewee
from marshmallow import validate

from api.entities.base import Entity, RecordModel, RecordSchema, Relation
from api.fields import Ref, Text


class Comment(RecordModel):
    task_id = peewee.CharField(max_length=40)
    author_id = peewee.CharField(max_length=40, null=True)
    body = peewee.TextField()

    class Meta:
        table_name = "comments"


class CommentSchema(RecordSchema):
    taskId = Ref("task", attribute="task_id", required=True)
    authorId = Ref("user", attribute="author_id", allow_none=True, load_default=None)
    body = Text(required=True, validate=validate.Length(1, 5000))


ENTITY = Entity(
    name="comment",
    path="comments",
    prefix="cmt",
    model=Comment,
    schema=CommentSchema,
    sortable=("createdAt", "updatedAt"),
    searchable=("body",),
    relations=(
        Relation("task", "task_id", "task", on_delete="cascade"),
        Relation("author", "author_id", "user", reverse="authoredComments"),
    ),
)
