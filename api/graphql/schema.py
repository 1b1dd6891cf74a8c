"""The GraphQL schema, generated from the entity registry; `SCHEMA` is built once at import.

Per entity (say `task`): an object type `Task` with its JSON fields, its forward
relations (`assignee`) and the reverse ones (`comments`, see `names.reverse_name`);
`task(id)` and `tasks(page, limit, cursor, sort, filter, q): TaskConnection!`;
`createTask(input: CreateTaskInput!): Task!`, `updateTask(id, input: UpdateTaskInput!): Task!`,
`deleteTask(id): Boolean!` (the seed's names and types).
Enum fields are plain strings (as in REST, so `filter: {status: "todo"}` works);
the service checks their values.
"""

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
)

from api.entities import ENTITIES, referencing
from api.entities.base import Entity, FieldSpec, RecordSchema
from api.graphql import names, resolvers
from api.graphql.arguments import filter_fields
from api.query import DEFAULT_LIMIT, MAX_LIMIT

SCALARS = {"id": GraphQLID, "ref": GraphQLID, "text": GraphQLString, "enum": GraphQLString,
           "datetime": GraphQLString, "int": GraphQLInt, "bool": GraphQLBoolean}

PageInfo = GraphQLObjectType("PageInfo", {
    "hasNextPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
    "hasPreviousPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
    "endCursor": GraphQLField(GraphQLString, description="Pass as `cursor` for the next page."),
})


def _non_null_list(of):
    return GraphQLNonNull(GraphQLList(GraphQLNonNull(of)))


def _description(spec: FieldSpec) -> str | None:
    if spec.kind == "datetime":
        return "An RFC 3339 timestamp (`2025-01-15T10:00:00Z`); input offsets are stored as UTC."
    return f"One of: {', '.join(spec.choices)}." if spec.choices else None


def _schema_field(entity: Entity, spec: FieldSpec):
    return next(f for name, f in entity.schema._declared_fields.items()
                if (f.data_key or name) == spec.json_name)


def _always_present(entity: Entity, spec: FieldSpec) -> bool:
    """`id` and the timestamps, and writable fields that cannot be null."""
    schema_field = _schema_field(entity, spec)
    if spec.json_name in RecordSchema._declared_fields:
        return True
    return not schema_field.dump_only and not schema_field.allow_none


def _json_name(entity: Entity, attribute: str) -> str:
    return next(spec.json_name for spec in entity.fields.values() if spec.attribute == attribute)


def _sort_argument(entity: Entity) -> GraphQLArgument:
    return GraphQLArgument(GraphQLList(GraphQLNonNull(GraphQLString)), description=(
        "REST's `sort`: one comma-separated string or a list, `-` for descending. "
        f"Sortable: {', '.join(entity.sortable)}."))


class _Builder:
    """Builds the types of every entity; relations refer to each other through thunks."""

    def __init__(self):
        self.objects: dict[str, GraphQLObjectType] = {}
        self.filters = {name: self._filter_type(entity) for name, entity in ENTITIES.items()}
        for name, entity in ENTITIES.items():
            self.objects[name] = GraphQLObjectType(
                names.type_name(entity), self._fields_thunk(entity),
                description=f"A {entity.name} record (REST: `/api/v1/{entity.path}`).")

    def _fields_thunk(self, entity: Entity):
        return lambda: self._object_fields(entity)

    def _object_fields(self, entity: Entity) -> dict[str, GraphQLField]:
        fields = []
        for spec in entity.fields.values():
            kind = SCALARS[spec.kind]
            kind = GraphQLNonNull(kind) if _always_present(entity, spec) else kind
            fields.append((spec.json_name, GraphQLField(kind, resolve=resolvers.scalar,
                                                        description=_description(spec))))
        for relation in entity.relations:
            fields.append((relation.name, GraphQLField(
                self.objects[relation.target], resolve=resolvers.forward(relation),
                description=f"The {relation.target} that `{_json_name(entity, relation.attribute)}` names.")))
        for source, relation in referencing(entity.name):
            fields.append((names.reverse_name(source, relation), GraphQLField(
                _non_null_list(self.objects[source.name]), args=self._related_arguments(source),
                resolve=resolvers.reverse(source, relation),
                description=f"The {source.path} whose `{relation.name}` is this {entity.name}.")))
        names.check_unique(entity, [name for name, _ in fields])
        return dict(fields)

    def _related_arguments(self, source: Entity) -> dict[str, GraphQLArgument]:
        return {
            "filter": GraphQLArgument(self.filters[source.name]),
            "sort": _sort_argument(source),
            "limit": GraphQLArgument(GraphQLInt, default_value=DEFAULT_LIMIT,
                                     description=f"Most records per parent, 1-{MAX_LIMIT}."),
        }

    def _filter_type(self, entity: Entity) -> GraphQLInputObjectType:
        fields = {}
        for name, (spec, op) in filter_fields(entity).items():
            kind = SCALARS[spec.kind]
            if op in ("in", "nin"):
                kind = GraphQLList(GraphQLNonNull(kind))
            elif op == "isnull":
                kind = GraphQLBoolean
            elif op == "contains":
                kind = GraphQLString
            fields[name] = GraphQLInputField(kind, description=f"`{spec.json_name}[{op}]` in REST.")
        return GraphQLInputObjectType(f"{names.type_name(entity)}Filter", fields, description=(
            "REST's filters: the field itself is `eq`; other operators are suffixes."))

    def _input_type(self, entity: Entity, partial: bool) -> GraphQLInputObjectType:
        fields = {}
        for spec in entity.fields.values():
            if spec.json_name in entity.read_only_fields:
                continue
            kind = SCALARS[spec.kind]
            required = not partial and _schema_field(entity, spec).required
            fields[spec.json_name] = GraphQLInputField(GraphQLNonNull(kind) if required else kind,
                                                       description=_description(spec))
        verb = "Update" if partial else "Create"
        return GraphQLInputObjectType(f"{verb}{names.type_name(entity)}Input", fields)

    def query_fields(self, entity: Entity) -> dict[str, GraphQLField]:
        """`task(id)` and `tasks(…)`."""
        title = names.type_name(entity)
        edge = GraphQLObjectType(f"{title}Edge", {"node": GraphQLField(
            GraphQLNonNull(self.objects[entity.name]))})
        connection = GraphQLObjectType(f"{title}Connection", {
            "edges": GraphQLField(_non_null_list(edge)),
            "pageInfo": GraphQLField(GraphQLNonNull(PageInfo)),
            "totalCount": GraphQLField(GraphQLNonNull(GraphQLInt)),
        })
        return {
            names.single_field(entity): GraphQLField(
                self.objects[entity.name], args={"id": GraphQLArgument(GraphQLNonNull(GraphQLID))},
                resolve=resolvers.one(entity)),
            names.list_field(entity): GraphQLField(GraphQLNonNull(connection), args={
                "page": GraphQLArgument(GraphQLInt, description="1-based page (default 1)."),
                "limit": GraphQLArgument(GraphQLInt, default_value=DEFAULT_LIMIT,
                                         description=f"Records per page, 1-{MAX_LIMIT}."),
                "cursor": GraphQLArgument(GraphQLString, description=(
                    "Keyset pagination: a previous page's `pageInfo.endCursor` (not with `page`).")),
                "sort": _sort_argument(entity),
                "filter": GraphQLArgument(self.filters[entity.name]),
                "q": GraphQLArgument(GraphQLString, description=(
                    f"Case-insensitive substring of {', '.join(entity.searchable)}.")),
            }, resolve=resolvers.page(entity)),
        }

    def mutation_fields(self, entity: Entity) -> dict[str, GraphQLField]:
        """`createTask`, `updateTask` and `deleteTask`."""
        title = names.type_name(entity)
        record_id = GraphQLArgument(GraphQLNonNull(GraphQLID))
        return {
            f"create{title}": GraphQLField(GraphQLNonNull(self.objects[entity.name]), args={
                "input": GraphQLArgument(GraphQLNonNull(self._input_type(entity, partial=False)))},
                resolve=resolvers.create(entity)),
            f"update{title}": GraphQLField(GraphQLNonNull(self.objects[entity.name]), args={
                "id": record_id,
                "input": GraphQLArgument(GraphQLNonNull(self._input_type(entity, partial=True)))},
                resolve=resolvers.update(entity)),
            f"delete{title}": GraphQLField(GraphQLNonNull(GraphQLBoolean), args={"id": record_id},
                                           resolve=resolvers.delete(entity)),
        }


def build_schema() -> GraphQLSchema:
    """The schema of every registered entity."""
    builder = _Builder()
    query, mutation = {}, {}
    for entity in ENTITIES.values():
        query.update(builder.query_fields(entity))
        mutation.update(builder.mutation_fields(entity))
    return GraphQLSchema(query=GraphQLObjectType("Query", query),
                         mutation=GraphQLObjectType("Mutation", mutation))


SCHEMA = build_schema()
