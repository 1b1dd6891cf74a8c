"""Generic record service: list, get, create, update, replace and delete for any entity.

REST, batch, GraphQL and jobs call this; its writes, like bulk's, go through
the write engine (`api.services.writes`), and nothing else writes entity rows.
Every method is scoped to one account: another account's record is simply not
found.
"""

from dataclasses import dataclass

import peewee

from api.entities import ENTITIES
from api.entities.base import Entity
from api.errors import NotFound
from api.query import (
    ListQuery,
    cursor_values,
    encode_cursor,
    filter_expression,
    keyset_condition,
    order_by,
    search_expression,
)
from api.services.validation import Validator
from api.services.writes import Change, raise_first, writer_for
from api.store import db, fetch_models, fetch_of_account, ids_of_account, loaded_ahead, take_loaded


@dataclass
class Page:
    """One page of a list: serialized rows and what `meta` needs."""

    rows: list
    total: int | None
    has_next: bool
    next_cursor: str | None


def reads_record(entity_name: str):
    """Mark a view that answers with the record named by its `record_id` (read with `get`)."""

    def decorate(view):
        view.reads_record = entity_name
        return view

    return decorate


def read_ahead(account_id: str, ids_by_entity: dict[str, list[str]]):
    """Load these records with one query per entity, for `get` to hand each out once
    while the returned context runs (until a write begins): for a run of reads (a
    batch's consecutive GETs), each would otherwise be a query of its own."""
    rows = {}
    for name, ids in ids_by_entity.items():
        for row in service_for(name).get_many(account_id, ids):
            rows[(name, account_id, row.id)] = row
    return loaded_ahead(rows)


class RecordService(Validator):
    """Reads of one entity's records, and its single-record writes (through the engine)."""

    def __init__(self, entity: Entity):
        super().__init__(entity)
        self.writer = writer_for(entity.name)

    def _scoped(self, account_id: str):
        return self.model.select().where(self.model.account_id == account_id)

    def list_page(self, account_id: str, lq: ListQuery, *, count: bool = True) -> Page:
        """A page of records matching `lq`, in its sort order (`total` None unless `count`)."""
        query = self._scoped(account_id)
        for flt in lq.filters:
            query = query.where(filter_expression(self.entity, flt))
        if lq.q:
            query = query.where(search_expression(self.entity, lq.q))
        total = query.count() if count else None
        if lq.cursor:
            query = query.where(keyset_condition(self.entity, lq))
        else:
            query = query.offset((lq.page - 1) * lq.limit)
        rows = list(query.order_by(*order_by(self.entity, lq)).limit(lq.limit + 1))
        has_next = len(rows) > lq.limit
        rows = rows[: lq.limit]
        next_cursor = None
        if has_next and rows:
            next_cursor = encode_cursor(lq.sort_text, cursor_values(self.entity, lq, rows[-1]),
                                        rows[-1].id)
        return Page(rows, total, has_next, next_cursor)

    def get(self, account_id: str, record_id: str):
        """The record, or 404 (also for another account's id)."""
        row = take_loaded((self.entity.name, account_id, record_id))
        if row is not None:
            return row
        where = f'"id" = {db.param} AND "account_id" = {db.param}'
        # No id holds a NUL, and PostgreSQL refuses one in a query (a 500 otherwise).
        rows = [] if "\x00" in record_id else fetch_models(self.model, where,
                                                             (record_id, account_id), prepared=True)
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"{self.entity.title} {record_id[:64]} not found.")
        return row

    def get_many(self, account_id: str, ids) -> list:
        """The account's records among `ids` (one query, in no particular order)."""
        ids = list(set(ids) - {None})
        if not ids:
            return []
        return fetch_of_account(self.model, account_id, ids)

    def list_related(self, account_id: str, attribute: str, parent_ids, lq: ListQuery) -> list:
        """Up to `lq.limit` records per parent whose `attribute` is in `parent_ids`, in one query.

        Filtered and sorted by `lq` (its page, cursor and `q` are ignored); the rows of
        each parent come in `lq`'s order.
        """
        parent_ids = list(set(parent_ids) - {None})
        if not parent_ids:
            return []
        reference = getattr(self.model, attribute)
        rank = peewee.fn.ROW_NUMBER().over(partition_by=[reference],
                                           order_by=order_by(self.entity, lq))
        query = self._scoped(account_id).where(reference.in_(parent_ids))
        for flt in lq.filters:
            query = query.where(filter_expression(self.entity, flt))
        ranked = query.select(self.model, rank.alias("rank")).alias("ranked")
        columns = [ranked.c[f.column_name] for f in self.model._meta.sorted_fields]
        return list(self.model.select(*columns).from_(ranked)
                    .where(ranked.c.rank <= lq.limit).order_by(ranked.c.rank))

    def serialize(self, account_id: str, rows: list, fields=None, expand=()) -> list[dict]:
        """Rows as JSON dicts, with `expand`ed relations embedded (one query per relation)."""
        data = [self.entity.dump(row) for row in rows]
        for name in expand:
            relation = self.entity.relation(name)
            target = ENTITIES[relation.target]
            ids = {getattr(row, relation.attribute) for row in rows} - {None}
            related = {}
            if ids:
                found = target.model.select().where(
                    ids_of_account(account_id, list(ids)))
                related = {r.id: target.dump(r) for r in found}
            for row, item in zip(rows, data):
                item[name] = related.get(getattr(row, relation.attribute))
        if fields is not None:
            keep = set(fields) | set(expand)
            data = [{k: v for k, v in item.items() if k in keep} for item in data]
        return data

    def create(self, account_id: str, payload: dict):
        """Validate and insert one record; returns the stored row."""
        result = self.writer.create_many(account_id, [payload], raise_first)
        return self._model(result.rows[0])

    def update(self, account_id: str, record_id: str, payload: dict, *, replace: bool = False,
               if_match: str | None = None):
        """PATCH (partial) or PUT (`replace=True`) one record; returns the stored row."""
        change = Change(0, record_id, payload, if_match)
        return self.writer.update_many(account_id, [change], raise_first, replace=replace).rows[0]

    def delete(self, account_id: str, record_id: str, if_match: str | None = None):
        """Delete one record with its cascades; returns the row as it was."""
        target = Change(0, record_id, {}, if_match)
        return self.writer.delete_many(account_id, [target], raise_first).rows[0]

    def _model(self, values: dict):
        row = self.model(__no_default__=True)
        row.__data__ = values
        return row


_SERVICES: dict[str, RecordService] = {}


def service_for(entity_name: str) -> RecordService:
    """The (cached) service of an entity."""
    if entity_name not in _SERVICES:
        _SERVICES[entity_name] = RecordService(ENTITIES[entity_name])
    return _SERVICES[entity_name]
