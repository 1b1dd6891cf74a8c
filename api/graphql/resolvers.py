"""Resolvers: every read and write goes through `RecordService` (scoping, validation, events).

Errors are the service's `APIError`s; `execution.py` turns them into GraphQL errors
carrying the contract's code and details.
"""

from dataclasses import dataclass

from api.auth import has_scope
from api.entities.base import Entity, Relation
from api.errors import APIError
from api.graphql import loading
from api.graphql.arguments import list_query
from api.query import cursor_values, encode_cursor
from api.services.records import service_for


@dataclass(frozen=True)
class Context:
    """Who is asking: the key's account and scopes."""

    account_id: str
    scopes: frozenset


def require_scope(context: Context, scope: str) -> None:
    """An `INSUFFICIENT_SCOPE` error unless the key has `scope`."""
    if not has_scope(context.scopes, scope):
        raise APIError(403, "INSUFFICIENT_SCOPE", f"This API key lacks the '{scope}' scope.",
                       {"required": scope})


def scalar(node: loading.Node, info):
    """A record's JSON field."""
    return node.data[info.field_name]


def _node(entity: Entity, context: Context, row) -> loading.Node:
    return loading.Batch(entity, context.account_id, [row]).nodes[0]


def one(entity: Entity):
    """`task(id)`: the record, or NOT_FOUND (also for another account's id)."""
    service = service_for(entity.name)

    def resolve(_root, info, id):
        return _node(entity, info.context, service.get(info.context.account_id, id))

    return resolve


def page(entity: Entity):
    """`tasks(page, limit, cursor, sort, filter, q)`: a connection over the REST list query."""
    service = service_for(entity.name)

    def resolve(_root, info, **args):
        lq = list_query(entity, args)
        result = service.list_page(info.context.account_id, lq)
        batch = loading.Batch(entity, info.context.account_id, result.rows)
        end_cursor = None
        if result.rows:
            last = result.rows[-1]
            end_cursor = encode_cursor(lq.sort_text, cursor_values(entity, lq, last), last.id)
        return {
            "edges": [{"node": node} for node in batch.nodes],
            "pageInfo": {"hasNextPage": result.has_next,
                         "hasPreviousPage": bool(lq.cursor) or lq.page > 1,
                         "endCursor": end_cursor},
            "totalCount": result.total,
        }

    return resolve


def forward(relation: Relation):
    """`task.assignee`: the referenced record (null when the reference is)."""

    def resolve(node: loading.Node, info):
        require_scope(info.context, "read")
        found = node.batch.related((relation.name,), lambda b: loading.referenced(b, relation))
        return found[node.row.id]

    return resolve


def reverse(source: Entity, relation: Relation):
    """`project.tasks(filter, sort, limit)`: the records pointing at this one."""

    def resolve(node: loading.Node, info, **args):
        require_scope(info.context, "read")
        key = loading.arguments_key(info.field_name, args)
        found = node.batch.related(
            key, lambda b: loading.referencing(b, source, relation, list_query(source, args)))
        return found[node.row.id]

    return resolve


def create(entity: Entity):
    """`createTask(input)`: validated and stored like `POST /tasks`."""
    service = service_for(entity.name)

    def resolve(_root, info, input):
        return _node(entity, info.context, service.create(info.context.account_id, input))

    return resolve


def update(entity: Entity):
    """`updateTask(id, input)`: a partial update like `PATCH /tasks/{id}`."""
    service = service_for(entity.name)

    def resolve(_root, info, id, input):
        return _node(entity, info.context, service.update(info.context.account_id, id, input))

    return resolve


def delete(entity: Entity):
    """`deleteTask(id)`: like `DELETE /tasks/{id}` (cascades included); true when deleted."""
    service = service_for(entity.name)

    def resolve(_root, info, id):
        service.delete(info.context.account_id, id)
        return True

    return resolve
