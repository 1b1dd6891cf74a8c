"""Projects: named groups of tasks."""

import peewee
from marshmallow import validate

from api.entities.base import Entity, RecordModel, RecordSchema
from api.fields import Text


class Project(RecordModel):
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(null=True)

    class Meta:
        table_name = "projects"


class ProjectSchema(RecordSchema):
    name = Text(required=True, validate=validate.Length(1, 200))
    description = Text(allow_none=True, load_default=None, validate=validate.Length(max=10000))


ENTITY = Entity(
    name="project",
    path="projects",
    prefix="prj",
    model=Project,
    schema=ProjectSchema,
    sortable=("createdAt", "updatedAt", "name"),
    searchable=("name", "description"),
)
