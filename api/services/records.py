"""Generic record service: list, get, create, update, replace and delete for any entity.

REST, bulk, batch, GraphQL and jobs all call this; nothing else writes entity
rows. Every method is scoped to one account: another account's record is
simply not found.
"""

from dataclasses import dataclass

import peewee
from marshmallow import ValidationError

from api.entities import DELETE_HOOKS, ENTITIES, referencing
from api.entities.base import Entity
from api.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed, flatten_messages
from api.ids import new_id
from api.query import (
    ListQuery,
    cursor_values,
    encode_cursor,
    filter_expression,
    keyset_condition,
    order_by,
    search_expression,
)
from api.services import events
from api.store import (
    db,
    fetch_models,
    fetch_of_account,
    ids_of_account,
    is_postgres,
    loaded_ahead,
    take_loaded,
    transaction,
)
from api.timeutil import utcnow


@dataclass
class Page:
    """One page of a list: serialized rows and what `meta` needs."""

    rows: list
    total: int
    has_next: bool
    next_cursor: str | None


def etag(row) -> str:
    """The strong ETag of a stored record: its id and stored version."""
    return f'"{row.id}.{row.version}"'


def etag_matches(header: str, row, weak: bool = False) -> bool:
    """True when an `If-Match` (strong comparison) or `If-None-Match` (`weak=True`) names `row`."""
    tags = [t.strip() for t in header.split(",")]
    if weak:
        tags = [t[2:] if t.startswith("W/") else t for t in tags]
    return "*" in tags or etag(row) in tags


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


class RecordService:
    """Reads and writes of one entity's records."""

    def __init__(self, entity: Entity):
        self.entity = entity
        self.model = entity.model
        self.schema = entity.schema()
        self.partial_schema = entity.schema(partial=True)

    def _scoped(self, account_id: str):
        return self.model.select().where(self.model.account_id == account_id)

    def list_page(self, account_id: str, lq: ListQuery) -> Page:
        """A page of records matching `lq`, in its sort order."""
        query = self._scoped(account_id)
        for flt in lq.filters:
            query = query.where(filter_expression(self.entity, flt))
        if lq.q:
            query = query.where(search_expression(self.entity, lq.q))
        total = query.count()
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

    def get(self, account_id: str, record_id: str, for_update: bool = False):
        """The record, or 404 (also for another account's id)."""
        if not for_update:
            row = take_loaded((self.entity.name, account_id, record_id))
            if row is not None:
                return row
        where = (f'"id" = {db.param} AND "account_id" = {db.param}'
                 + (" FOR UPDATE" if for_update and is_postgres() else ""))
        # No id holds a NUL, and PostgreSQL refuses one in a query (a 500 otherwise).
        rows = [] if "\x00" in record_id else fetch_models(self.model, where,
                                                             (record_id, account_id))
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

    def validate(self, payload: dict, partial: bool) -> dict:
        """Schema-check a JSON body: unknown or read-only fields and bad values are 400s."""
        (values,) = self.validate_many([payload], partial)
        if isinstance(values, ValidationFailed):
            raise values
        return values

    def validate_many(self, payloads: list[dict], partial: bool) -> list:
        """`validate` for many payloads in one schema pass (bulk writes).

        Returns, in order, each payload's values or its `ValidationFailed`.
        """
        read_only = self.entity.read_only_fields
        errors = [{name: ["This field is read-only."] for name in payload if name in read_only}
                  for payload in payloads]
        clean = [{k: v for k, v in payload.items() if k not in error}
                 for payload, error in zip(payloads, errors)]
        try:
            values = (self.partial_schema if partial else self.schema).load(clean, many=True)
        except ValidationError as exc:
            values = exc.valid_data
            for index, messages in exc.messages.items():
                errors[index].update(flatten_messages(messages))
        return [ValidationFailed(error) if error else value for value, error in zip(values, errors)]

    def check_references(self, account_id: str, values: dict) -> None:
        """Every referenced record exists in the account, or a 400 naming the field."""
        errors = {}
        for relation in self.entity.relations:
            ref = values.get(relation.attribute)
            if ref is None:
                continue
            target = ENTITIES[relation.target]
            exists = target.model.select(target.model.id).where(
                (target.model.id == ref) & (target.model.account_id == account_id)).exists()
            if not exists:
                errors[self._json_name(relation.attribute)] = [
                    f"{target.title} {ref} does not exist."]
        if errors:
            raise ValidationFailed(errors)

    def _json_name(self, attribute: str) -> str:
        return next(s.json_name for s in self.entity.fields.values() if s.attribute == attribute)

    def create(self, account_id: str, payload: dict):
        """Validate and insert one record; returns the stored row."""
        values = self.validate(payload, partial=False)
        with transaction():
            self.check_references(account_id, values)
            if self.entity.before_write:
                self.entity.before_write(values, None)
            now = utcnow()
            row = self.model(id=new_id(self.entity.prefix), account_id=account_id, version=1,
                             created_at=now, updated_at=now, **values)
            self.write(lambda: row.save(force_insert=True))
            events.emit(account_id, f"{self.entity.name}.created", [self.entity.dump(row)])
        return row

    def update(self, account_id: str, record_id: str, payload: dict, *, replace: bool = False,
               if_match: str | None = None):
        """PATCH (partial) or PUT (`replace=True`) one record; returns the stored row."""
        values = self.validate(payload, partial=not replace)
        with transaction():
            row = self.get(account_id, record_id, for_update=True)
            if if_match is not None and not etag_matches(if_match, row):
                raise PreconditionFailed()
            self.check_references(account_id, values)
            if self.entity.before_write:
                self.entity.before_write(values, row.__data__)
            previous = self.entity.previous_attributes(row.__data__, values)
            if not previous:
                return row
            values["updated_at"] = utcnow()
            values["version"] = row.version + 1
            query = self.model.update(**values).where(
                (self.model.id == row.id) & (self.model.version == row.version))
            if self.write(query.execute) != 1:
                raise PreconditionFailed("The record changed while it was being updated.")
            for name, value in values.items():
                setattr(row, name, value)
            events.emit(account_id, f"{self.entity.name}.updated", [self.entity.dump(row)],
                        [previous])
        return row

    def delete(self, account_id: str, record_id: str, if_match: str | None = None):
        """Delete one record with its cascades; returns the row as it was."""
        with transaction():
            row = self.get(account_id, record_id, for_update=True)
            if if_match is not None and not etag_matches(if_match, row):
                raise PreconditionFailed()
            self.detach_dependents(account_id, [row.id])
            self.model.delete().where(self.model.id == row.id).execute()
            events.emit(account_id, f"{self.entity.name}.deleted", [self.entity.dump(row)])
        return row

    def detach_dependents(self, account_id: str, ids: list[str]) -> None:
        """Apply each referencing relation's `on_delete` to the records pointing at `ids`.

        Cascaded deletes emit `*.deleted` and nulled references `*.updated`, like any write.
        """
        now = utcnow()
        for hook in DELETE_HOOKS.get(self.entity.name, ()):
            hook(account_id, ids)
        for entity, relation in referencing(self.entity.name):
            model = entity.model
            pointing = (getattr(model, relation.attribute).in_(ids)) & (model.account_id == account_id)
            dependents = list(model.select().where(pointing))
            if not dependents:
                continue
            if relation.on_delete == "cascade":
                service_for(entity.name).detach_dependents(account_id, [r.id for r in dependents])
                model.delete().where(pointing).execute()
                events.emit(account_id, f"{entity.name}.deleted", [entity.dump(r) for r in dependents])
                continue
            model.update(**{relation.attribute: None, "updated_at": now,
                            "version": model.version + 1}).where(pointing).execute()
            previous = [entity.previous_attributes(r.__data__, {relation.attribute: None})
                        for r in dependents]
            for r in dependents:
                setattr(r, relation.attribute, None)
                r.updated_at, r.version = now, r.version + 1
            events.emit(account_id, f"{entity.name}.updated", [entity.dump(r) for r in dependents],
                        previous)

    def write(self, operation):
        """Run a write, turning integrity errors into 409 (unique) or 400 (vanished reference)."""
        try:
            return operation()
        except peewee.IntegrityError as exc:
            message = str(exc).lower()
            if "unique" in message or "duplicate" in message:
                raise Conflict(f"A {self.entity.name} with these values already exists.",
                               self._unique_details()) from exc
            raise ValidationFailed({"_schema": ["A referenced record no longer exists."]}) from exc

    def _unique_details(self) -> dict:
        return {name: ["Already in use."] for name in self.entity.unique}


_SERVICES: dict[str, RecordService] = {}


def service_for(entity_name: str) -> RecordService:
    """The (cached) service of an entity."""
    if entity_name not in _SERVICES:
        _SERVICES[entity_name] = RecordService(ENTITIES[entity_name])
    return _SERVICES[entity_name]
