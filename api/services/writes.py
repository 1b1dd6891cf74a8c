"""The write engine: create, update and delete many records of one entity in one transaction.

Every write of an entity record goes through here: REST's single-record
routes (a list of one), bulk routes, batch sub-requests, GraphQL mutations,
file imports and the cascades of a delete. Each operation

- validates every item in one schema pass;
- locks the rows it changes (`SELECT … ORDER BY id FOR UPDATE` on PostgreSQL;
  SQLite's `BEGIN IMMEDIATE` admits one writer at a time), so what it checks
  (`If-Match`, the fields it changes) is the row as it will be overwritten;
- checks references (one query per relation) and unique fields (one query per
  field, by their casefolded keys) for the whole set, and runs the entity's
  `before_write` hook;
- writes set-based: `insert_rows` in chunks, updates grouped by the columns
  they change and guarded by `WHERE id = ? AND version = ?`, deletes by `IN`;
- emits one event per record written, built from the row as written.

An operation that is the outermost transaction runs again when PostgreSQL
rolls it back for a deadlock (`store.retried`); inside an outer transaction
(an atomic batch) the conflict is the request's 409.

Items that fail become `Failure`s. `on_failure(failures)` decides what they
mean: it raises (nothing is written: a single write's error, or a bulk
request's all-or-nothing 400), or it is None and the other items are written.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from api.entities import DELETE_HOOKS, ENTITIES, referencing
from api.entities.base import Entity
from api.errors import APIError, Conflict, NotFound, PreconditionFailed, ValidationFailed
from api.ids import new_id
from api.services import events, record_cache
from api.services.validation import Validator
from api.store import (
    db,
    execute_many,
    fetch_models,
    ids_of_account,
    insert_rows,
    is_postgres,
    retried,
    transaction,
)
from api.timeutil import utcnow

IN_CHUNK = 500
GENERIC_MESSAGE = ValidationFailed({}).message


@dataclass
class Failure:
    """One item that was not written, and why (in the contract's error terms)."""

    index: int
    item: object
    error: str
    code: str
    details: dict = field(default_factory=dict)
    exc: APIError | None = None

    @classmethod
    def of(cls, index: int, item, exc: APIError, details: dict | None = None) -> "Failure":
        """The failure of item `index` with `exc` (its `details`, unless given)."""
        details = details if details is not None else exc.details or {}
        message = exc.message
        if message == GENERIC_MESSAGE and details:
            message = "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in details.items())
        return cls(index, item, message, exc.code, details, exc)

    def as_json(self) -> dict:
        return {"index": self.index, "item": self.item, "error": self.error, "code": self.code,
                "details": self.details}


@dataclass
class Change:
    """One update: the record, the JSON fields to change and an optional `If-Match`."""

    index: int
    record_id: str
    payload: dict
    if_match: str | None = None
    item: object = None


@dataclass
class WriteResult:
    """What an operation did: the rows written (in item order) and the items that failed."""

    rows: list
    failures: list[Failure]
    data: list[dict] | None = None


FailurePolicy = Callable[[list[Failure]], None] | None


def raise_first(failures: list[Failure]) -> None:
    """The policy of a single-record write: its one failure is the request's error."""
    raise failures[0].exc


def etag_matches(header: str, row, weak: bool = False) -> bool:
    """True when an `If-Match` (strong comparison) or `If-None-Match` (`weak=True`) names `row`."""
    return etag_listed(header, etag(row), weak)


def etag_listed(header: str, tag: str, weak: bool = False) -> bool:
    """True when an `If-Match` (strong comparison) or `If-None-Match` (`weak=True`) names the
    ETag `tag`."""
    tags = [t.strip() for t in header.split(",")]
    if weak:
        tags = [t[2:] if t.startswith("W/") else t for t in tags]
    return "*" in tags or tag in tags


def etag(row) -> str:
    """The strong ETag of a stored record: its id and stored version."""
    return f'"{row.id}.{row.version}"'


def _chunks(values: list, size: int = IN_CHUNK):
    """`values` in slices of `size` (the ids of one `IN (…)`)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class RecordWriter(Validator):
    """The write engine of one entity (see the module docstring)."""

    @retried
    def create_many(self, account_id: str, items: list, on_failure: FailurePolicy) -> WriteResult:
        """Create a record per item (a JSON object, as for `POST /{entity}`)."""
        entity = self.entity
        candidates, failures = self._validated(dict(enumerate(items)), False, items)
        _settle(failures, on_failure)
        with transaction():
            self._check_references(account_id, candidates, failures, items)
            self._check_unique(account_id, candidates, failures, items)
            _settle(failures, on_failure)
            now = utcnow()
            rows = []
            for index in sorted(candidates):
                values = candidates[index]
                if entity.before_write:
                    entity.before_write(values, None)
                rows.append({"id": new_id(entity.prefix), "account_id": account_id, "version": 1,
                             "created_at": now, "updated_at": now, **values})
            columns = sorted({name for row in rows for name in row})
            self.write(lambda: insert_rows(entity.model, rows, columns))
            data = [entity.dump(row) for row in rows]
            events.emit(account_id, f"{entity.name}.created", data)
        return WriteResult(rows, failures, data)

    @retried
    def update_many(self, account_id: str, changes: list[Change], on_failure: FailurePolicy,
                    *, replace: bool = False, failures: list[Failure] | None = None) -> WriteResult:
        """Apply each change (PATCH, or PUT with `replace=True`) to its locked, current row.

        `failures` are items the caller already found wrong (they count for `on_failure`).
        """
        failures = list(failures or [])
        items = {c.index: c.item if c.item is not None else c.payload for c in changes}
        by_index = {c.index: c for c in changes}
        candidates, invalid = self._validated({c.index: c.payload for c in changes},
                                              not replace, items)
        failures += invalid
        _settle(failures, on_failure)
        with transaction():
            current = self.lock(account_id, [by_index[i].record_id for i in candidates])
            for index in sorted(candidates):
                change = by_index[index]
                row = current.get(change.record_id)
                if row is None:
                    error = NotFound(f"{self.entity.title} {change.record_id[:64]} not found.")
                    failures.append(Failure.of(index, items[index], error, {"id": ["Not found."]}))
                elif change.if_match is not None and not etag_matches(change.if_match, row):
                    failures.append(Failure.of(index, items[index], PreconditionFailed()))
                else:
                    candidates[index]["id"] = row.id
                    continue
                del candidates[index]
            self._check_references(account_id, candidates, failures, items)
            self._check_unique(account_id, candidates, failures, items)
            _settle(failures, on_failure)
            rows = []
            changes_by_id = {}
            for index in sorted(candidates):
                values = dict(candidates[index])
                row = current[values.pop("id")]
                rows.append(row)
                changes_by_id[row.id] = values
            self.apply_updates(account_id, rows, changes_by_id)
        return WriteResult(rows, failures)

    def apply_updates(self, account_id: str, rows: list, changes_by_id: dict[str, dict]) -> None:
        """Write validated `changes_by_id` to their locked `rows` (updated in place) and emit
        one `*.updated` per row that changed; a change that changes nothing is no write."""
        entity = self.entity
        now = utcnow()
        changed, previous, groups = [], [], {}
        for row in rows:
            values = changes_by_id[row.id]
            if entity.before_write:
                entity.before_write(values, row.__data__)
            before = entity.previous_attributes(row.__data__, values)
            if not before:
                continue
            values.update(updated_at=now, version=row.version + 1)
            groups.setdefault(tuple(sorted(values)), []).append((row, values))
            changed.append(row)
            previous.append(before)
        record_cache.changing([row.id for row in changed])
        for columns, members in groups.items():
            self._guarded_update(columns, members)
        for row in changed:
            for name, value in changes_by_id[row.id].items():
                setattr(row, name, value)
        events.emit(account_id, f"{entity.name}.updated", [entity.dump(r) for r in changed], previous)

    def _guarded_update(self, columns: tuple, members: list) -> None:
        """One `UPDATE … WHERE id = ? AND version = ?` for every member, in one executemany."""
        model = self.model
        param = db.param
        fields = model._meta.fields
        assignments = ", ".join(f'"{fields[c].column_name}" = {param}' for c in columns)
        sql = (f'UPDATE "{model._meta.table_name}" SET {assignments} '
               f'WHERE "id" = {param} AND "version" = {param}')
        params = [[fields[c].db_value(values[c]) for c in columns] + [row.id, row.version]
                  for row, values in members]
        written = self.write(lambda: execute_many(sql, params))
        if written is not None and written != len(members):
            raise PreconditionFailed("The record changed while it was being updated.")

    @retried
    def delete_many(self, account_id: str, targets: list[Change], on_failure: FailurePolicy
                    ) -> WriteResult:
        """Delete each target's record (checking its `If-Match`) with its cascades; the
        result's rows are the records as they were."""
        failures = []
        with transaction():
            current = self.lock(account_id, [t.record_id for t in targets])
            rows = []
            for target in targets:
                row = current.get(target.record_id)
                if row is None:
                    error = NotFound(f"{self.entity.title} {target.record_id[:64]} not found.")
                elif target.if_match is not None and not etag_matches(target.if_match, row):
                    error = PreconditionFailed()
                else:
                    rows.append(row)
                    continue
                failures.append(Failure.of(target.index, target.item or target.record_id, error))
            _settle(failures, on_failure)
            self.remove(account_id, rows)
        return WriteResult(rows, failures)

    def remove(self, account_id: str, rows: list) -> None:
        """Delete locked `rows` after applying the `on_delete` of every relation pointing at them."""
        model = self.model
        record_cache.changing([row.id for row in rows])
        for chunk in _chunks([row.id for row in rows]):
            self._detach_dependents(account_id, chunk)
            model.delete().where(model.id.in_(chunk)).execute()
        events.emit(account_id, f"{self.entity.name}.deleted", [self.entity.dump(r) for r in rows])

    def _detach_dependents(self, account_id: str, ids: list[str]) -> None:
        """Cascade deletes, or null the references, of records pointing at `ids`; each is a
        write of its own entity (locked, versioned, with its event)."""
        for hook in DELETE_HOOKS.get(self.entity.name, ()):
            hook(account_id, ids)
        for entity, relation in referencing(self.entity.name):
            writer = writer_for(entity.name)
            dependents = writer.lock_where(account_id, relation.attribute, ids)
            if not dependents:
                continue
            if relation.on_delete == "cascade":
                writer.remove(account_id, dependents)
            else:
                writer.apply_updates(account_id, dependents,
                                     {row.id: {relation.attribute: None} for row in dependents})

    def lock(self, account_id: str, ids: list[str]) -> dict:
        """The account's rows among `ids`, locked for this transaction, by id."""
        rows = {}
        for chunk in _chunks(sorted(set(ids))):
            condition = ids_of_account(account_id, chunk)
            rows.update((row.id, row) for row in fetch_models(
                self.model, condition.sql + _locking(), condition.params))
        return rows

    def lock_where(self, account_id: str, attribute: str, values: list[str]) -> list:
        """The account's rows whose `attribute` is among `values`, locked, in id order."""
        column = self.model._meta.fields[attribute].column_name
        placeholders = ", ".join([db.param] * len(values))
        where = f'"{column}" IN ({placeholders}) AND "account_id" = {db.param}'
        return fetch_models(self.model, where + _locking(), (*values, account_id))

    def _validated(self, payloads: dict[int, object], partial: bool, items
                   ) -> tuple[dict[int, dict], list[Failure]]:
        """Schema-check payloads by index: (the values of the valid ones, failures of `items`)."""
        failures = []
        objects = {}
        for index, payload in payloads.items():
            if isinstance(payload, dict):
                objects[index] = payload
            else:
                failures.append(Failure.of(index, items[index], ValidationFailed(
                    {"_schema": ["Must be a JSON object."]}, "Each item must be a JSON object.")))
        candidates = {}
        for index, values in zip(objects, self.validate_many(list(objects.values()), partial)):
            if isinstance(values, ValidationFailed):
                failures.append(Failure.of(index, items[index], values))
            else:
                candidates[index] = self.entity.with_unique_keys(values)
        return candidates, failures

    def _check_references(self, account_id: str, candidates: dict[int, dict],
                          failures: list[Failure], items) -> None:
        """Drop candidates whose references are missing: one query per relation."""
        for relation in self.entity.relations:
            wanted = {v[relation.attribute] for v in candidates.values() if v.get(relation.attribute)}
            if not wanted:
                continue
            target = ENTITIES[relation.target]
            found = existing_ids(target, account_id, wanted)
            json_name = self.json_name(relation.attribute)
            for index, values in list(candidates.items()):
                ref = values.get(relation.attribute)
                if ref and ref not in found:
                    message = f"{target.title} {ref} does not exist."
                    failures.append(Failure.of(index, items[index],
                                               ValidationFailed({json_name: [message]}, message)))
                    del candidates[index]

    def _check_unique(self, account_id: str, candidates: dict[int, dict],
                      failures: list[Failure], items) -> None:
        """Drop candidates colliding on a unique field's key, with stored rows or an earlier item.

        An update (a candidate with an `id`) may keep its own value; a value held by any
        other stored row is taken, even when that row is changed later in the same request.
        """
        model = self.model
        for json_name in self.entity.unique:
            key = self.entity.unique_key(json_name)
            column = getattr(model, key)
            wanted = {v[key] for v in candidates.values() if v.get(key)}
            taken: dict[str, set] = {}
            for chunk in _chunks(sorted(wanted)):
                query = model.select(model.id, column).where(
                    (model.account_id == account_id) & column.in_(chunk))
                for row in query:
                    taken.setdefault(getattr(row, key), set()).add(row.id)
            for index in sorted(candidates):
                value = candidates[index].get(key)
                if not value:
                    continue
                holder = candidates[index].get("id", index)  # a new record is known by its index
                if taken.get(value, set()) - {holder}:
                    shown = candidates[index][self.entity.fields[json_name].attribute]
                    error = Conflict(f"{json_name} {shown!r} is already in use.",
                                     {json_name: ["Already in use."]})
                    failures.append(Failure.of(index, items[index], error))
                    del candidates[index]
                else:
                    taken.setdefault(value, set()).add(holder)


def _locking() -> str:
    """Lock the rows read, in id order, so that concurrent writers queue instead of deadlocking."""
    return ' ORDER BY "id" FOR UPDATE' if is_postgres() else ' ORDER BY "id"'


def _settle(failures: list[Failure], on_failure: FailurePolicy) -> None:
    """Hand the failures so far to the policy (which may raise), in item order."""
    failures.sort(key=lambda f: f.index)
    if failures and on_failure is not None:
        on_failure(failures)


def existing_ids(entity: Entity, account_id: str, ids) -> set[str]:
    """Which of `ids` are records of `entity` in the account (one query per 500 ids)."""
    model = entity.model
    found = set()
    for chunk in _chunks(sorted(set(ids))):
        query = model.select(model.id).where(ids_of_account(account_id, chunk))
        found.update(row.id for row in query)
    return found


_WRITERS: dict[str, RecordWriter] = {}


def writer_for(entity_name: str) -> RecordWriter:
    """The (cached) write engine of an entity."""
    if entity_name not in _WRITERS:
        _WRITERS[entity_name] = RecordWriter(ENTITIES[entity_name])
    return _WRITERS[entity_name]
