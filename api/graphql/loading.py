"""Per-request batching: a relation is loaded once for every record loaded beside it.

Records read together (a page, one record, or the targets of one relation for a
whole batch) form a `Batch`. The first time any of them resolves a relation, the
relation is loaded for all of them with one `IN` query, and the others find it in
the batch's cache. So a page of 100 tasks with `assignee`, `project` and
`comments` costs the same few queries as a page of 5, at any nesting depth.
Batches live only as long as the request's result.
"""

import json

from api.entities import ENTITIES
from api.entities.base import Entity, Relation
from api.query import ListQuery
from api.services.records import service_for


class Node:
    """One record as GraphQL resolves it: its JSON fields, its row and its batch."""

    __slots__ = ("batch", "data", "row")

    def __init__(self, batch: "Batch", row):
        self.batch = batch
        self.row = row
        self.data = batch.entity.dump(row)


class Batch:
    """Records of one entity loaded together, with the relations loaded for all of them."""

    def __init__(self, entity: Entity, account_id: str, rows: list):
        self.entity = entity
        self.account_id = account_id
        self.nodes = [Node(self, row) for row in rows]
        self._loaded: dict[tuple, dict] = {}

    def related(self, key: tuple, load) -> dict:
        """`load(self)` (a dict keyed by record id), run once per `key` for the whole batch."""
        if key not in self._loaded:
            self._loaded[key] = load(self)
        return self._loaded[key]


def referenced(batch: Batch, relation: Relation) -> dict:
    """`{record id: referenced Node or None}` for a forward relation (`task.assignee`)."""
    target = ENTITIES[relation.target]
    ids = [getattr(node.row, relation.attribute) for node in batch.nodes]
    found = Batch(target, batch.account_id,
                  service_for(target.name).get_many(batch.account_id, ids))
    by_id = {node.row.id: node for node in found.nodes}
    return {node.row.id: by_id.get(getattr(node.row, relation.attribute)) for node in batch.nodes}


def referencing(batch: Batch, source: Entity, relation: Relation, lq: ListQuery) -> dict:
    """`{record id: [Node, …]}`: the `source` records whose `relation` points at each record."""
    rows = service_for(source.name).list_related(
        batch.account_id, relation.attribute, [node.row.id for node in batch.nodes], lq)
    found = Batch(source, batch.account_id, rows)
    grouped = {node.row.id: [] for node in batch.nodes}
    for node in found.nodes:
        grouped[getattr(node.row, relation.attribute)].append(node)
    return grouped


def arguments_key(name: str, args: dict) -> tuple:
    """A cache key for a relation field and its arguments."""
    return name, json.dumps(args, sort_keys=True, default=str)
