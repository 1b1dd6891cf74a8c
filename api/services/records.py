"""Generic record service: list, get, create, update, replace and delete for any entity.

REST, bulk, batch, GraphQL and jobs all call this; nothing else writes entity
rows. Every method is scoped to one account: another account's record is
simply not found.
"""

from dataclasses import dataclass

import peewee
from marshmallow import ValidationError

from api.entities import ENTITIES, referencing
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
from api.store import is_postgres, transaction
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


def etag_matches(header: str, row) -> bool:
    """True when an `If-Match`/`If-None-Match` header names `row`'s current ETag."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag(row) in tags


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
        query = self._scoped(account_id).where(self.model.id == record_id)
        if for_update and is_postgres():
            query = query.for_update()
        row = query.first()
        if row is None:
            raise NotFound(f"{self.entity.title} {record_id} not found.")
        return row

    def serialize(self, account_id: str, rows: list, fields=None, expand=()) -> list[dict]:
        """Rows as JSON dicts, with `expand`ed relations embedded (one query per relation)."""
        data = self.schema.dump(rows, many=True)
        for name in expand:
            relation = self.entity.relation(name)
            target = ENTITIES[relation.target]
            ids = {getattr(row, relation.attribute) for row in rows} - {None}
            related = {}
            if ids:
                found = target.model.select().where(
                    (target.model.account_id == account_id) & target.model.id.in_(list(ids)))
                related = {r.id: service_for(target.name).schema.dump(r) for r in found}
            for row, item in zip(rows, data):
                item[name] = related.get(getattr(row, relation.attribute))
        if fields is not None:
            keep = set(fields) | set(expand)
            data = [{k: v for k, v in item.items() if k in keep} for item in data]
        return data

    def validate(self, payload: dict, partial: bool) -> dict:
        """Schema-check a JSON body: unknown or read-only fields and bad values are 400s."""
        errors = {name: ["This field is read-only."] for name in payload
                  if name in self.entity.read_only_fields}
        clean = {k: v for k, v in payload.items() if k not in errors}
        try:
            values = (self.partial_schema if partial else self.schema).load(clean)
        except ValidationError as exc:
            errors.update(flatten_messages(exc.messages))
            values = None
        if errors:
            raise ValidationFailed(errors)
        return values

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
            row = self.model(id=new_id(self.entity.name), account_id=account_id, version=1,
                             created_at=now, updated_at=now, **values)
            self._write(lambda: row.save(force_insert=True))
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
            values["updated_at"] = utcnow()
            values["version"] = row.version + 1
            query = self.model.update(**values).where(
                (self.model.id == row.id) & (self.model.version == row.version))
            if self._write(query.execute) != 1:
                raise PreconditionFailed("The record changed while it was being updated.")
            for name, value in values.items():
                setattr(row, name, value)
        return row

    def delete(self, account_id: str, record_id: str, if_match: str | None = None):
        """Delete one record with its cascades; returns the row as it was."""
        with transaction():
            row = self.get(account_id, record_id, for_update=True)
            if if_match is not None and not etag_matches(if_match, row):
                raise PreconditionFailed()
            self.detach_dependents(account_id, [row.id])
            self.model.delete().where(self.model.id == row.id).execute()
        return row

    def detach_dependents(self, account_id: str, ids: list[str]) -> None:
        """Apply each referencing relation's `on_delete` to the records pointing at `ids`."""
        now = utcnow()
        for entity, relation in referencing(self.entity.name):
            model = entity.model
            pointing = (getattr(model, relation.attribute).in_(ids)) & (model.account_id == account_id)
            if relation.on_delete == "cascade":
                dependents = [r.id for r in model.select(model.id).where(pointing)]
                if dependents:
                    service_for(entity.name).detach_dependents(account_id, dependents)
                    model.delete().where(model.id.in_(dependents)).execute()
            else:
                model.update(**{relation.attribute: None, "updated_at": now,
                                "version": model.version + 1}).where(pointing).execute()

    def _write(self, operation):
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
