"""Users: people in an account; `email` is unique per account, compared casefolded."""

import peewee
from marshmallow import fields, validate

from api.entities.base import Entity, RecordModel, RecordSchema
from api.fields import Text


class User(RecordModel):
    name = peewee.CharField(max_length=100)
    email = peewee.CharField(max_length=254)
    email_key = peewee.CharField(max_length=254, null=True)  # casefolded; see Entity.unique_key

    class Meta:
        table_name = "users"


class UserSchema(RecordSchema):
    name = Text(required=True, validate=validate.Length(1, 100))
    email = fields.Email(required=True, validate=validate.Length(max=254))


ENTITY = Entity(
    name="user",
    path="users",
    prefix="usr",
    model=User,
    schema=UserSchema,
    sortable=("createdAt", "updatedAt", "name", "email"),
    searchable=("name", "email"),
    unique=("email",),
)
