"""The entity declaration: everything the generic machinery needs to know about one entity.

An entity file declares a peewee model (a subclass of `RecordModel`), a
marshmallow schema (a subclass of `RecordSchema`, camelCase `data_key`s) and an
`Entity` tying them together with what can be sorted, searched and expanded.
Filters, CRUD routes, bulk routes and docs are all derived from it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import peewee
from marshmallow import Schema, fields

from api.fields import Ref, Timestamp
from api.store import db
from api.timeutil import format_rfc3339


class BaseModel(peewee.Model):
    """Every table of the service."""

    class Meta:
        database = db
        legacy_table_names = False


class RecordModel(BaseModel):
    """Columns every entity record has: id, owner account, version, timestamps."""

    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()


class RecordSchema(Schema):
    """Fields every entity shows; `id` and the timestamps are read-only."""

    id = fields.String(dump_only=True)
    createdAt = Timestamp(attribute="created_at", dump_only=True)
    updatedAt = Timestamp(attribute="updated_at", dump_only=True)


@dataclass(frozen=True)
class Relation:
    """A reference from one entity to another (`task.assigneeId` → user).

    `reverse` optionally names the way back (`user.assignedTasks`); see
    `api.graphql.names.reverse_name` for the name used when it is not given.
    """

    name: str
    attribute: str
    target: str
    on_delete: str = "set_null"
    reverse: str | None = None


@dataclass(frozen=True)
class FieldSpec:
    """How one JSON field maps to a column and which filter operators it takes."""

    json_name: str
    attribute: str
    kind: str
    choices: tuple = ()

    @property
    def operators(self) -> tuple[str, ...]:
        ops = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "isnull")
        if self.kind in ("text", "enum", "ref", "id"):
            ops += ("contains",)
        return ops


@dataclass(eq=False)
class Entity:
    """One declared entity. See the module docstring and README "Add an entity"."""

    name: str
    path: str
    prefix: str
    model: type[RecordModel]
    schema: type[RecordSchema]
    sortable: tuple[str, ...]
    searchable: tuple[str, ...]
    relations: tuple[Relation, ...] = ()
    unique: tuple[str, ...] = ()
    before_write: Callable[[dict, dict | None], None] | None = None
    fields: dict[str, FieldSpec] = field(init=False)
    _dumpers: list = field(init=False, repr=False)

    def __post_init__(self):
        self._dumpers = [
            (f.data_key or name, f.attribute or name,
             format_rfc3339 if isinstance(f, Timestamp) else None)
            for name, f in self.schema._declared_fields.items()
        ]
        self.fields = {}
        for name, schema_field in self.schema._declared_fields.items():
            json_name = schema_field.data_key or name
            attribute = schema_field.attribute or name
            self.fields[json_name] = FieldSpec(json_name, attribute, _kind(json_name, schema_field),
                                               _choices(schema_field))

    def dump(self, row: RecordModel | dict) -> dict:
        """A stored row (a model or its column dict) as its JSON object.

        The same as the schema's dump, without marshmallow's per-field overhead.
        """
        data = row if isinstance(row, dict) else row.__data__
        return {name: (convert(data.get(attr)) if convert else data.get(attr))
                for name, attr, convert in self._dumpers}

    def unique_key(self, json_name: str) -> str:
        """The attribute holding a unique field's key: `<attribute>_key`, its casefolded value.

        Unique fields compare without regard to case, the same way on every backend
        (`Émile@x` and `émile@x` are one email): the table's unique index is on the key.
        """
        return f"{self.fields[json_name].attribute}_key"

    def with_unique_keys(self, values: dict) -> dict:
        """`values` with the key of every unique field they set (see `unique_key`)."""
        for json_name in self.unique:
            value = values.get(self.fields[json_name].attribute)
            if value is not None:
                values[self.unique_key(json_name)] = value.casefold()
        return values

    def previous_attributes(self, before: dict, values: dict) -> dict:
        """The fields `values` changes, as they were in `before` (JSON names and forms)."""
        changed = {}
        for name, attr, convert in self._dumpers:
            if attr in values and attr != "updated_at" and values[attr] != before.get(attr):
                old = before.get(attr)
                changed[name] = convert(old) if convert else old
        return changed

    @property
    def title(self) -> str:
        """`Task` for `task`."""
        return self.name.capitalize()

    @cached_property
    def read_only_fields(self) -> set[str]:
        """JSON names a client may never send (`id`, timestamps, …)."""
        return {f.data_key or n for n, f in self.schema._declared_fields.items() if f.dump_only}

    def relation(self, name: str) -> Relation | None:
        """The relation called `name`, if declared."""
        return next((r for r in self.relations if r.name == name), None)


def _kind(json_name: str, schema_field) -> str:
    if json_name == "id":
        return "id"
    if isinstance(schema_field, Ref):
        return "ref"
    if isinstance(schema_field, Timestamp):
        return "datetime"
    if isinstance(schema_field, fields.Integer):
        return "int"
    if isinstance(schema_field, fields.Boolean):
        return "bool"
    if _choices(schema_field):
        return "enum"
    return "text"


def _choices(schema_field) -> tuple:
    for validator in schema_field.validators:
        if hasattr(validator, "choices"):
            return tuple(validator.choices)
    return ()
