"""Bulk create, update and delete: validate everything first, then write set-based.

Every written record emits its event (in the same transaction); items that
fail, and updates that change nothing, emit none.

Validation costs one query per reference type and one per unique field for the
whole request, never one per item. Writes happen in one transaction: inserts
with `insert_many` in chunks, updates grouped by the set of columns they
change and sent with `executemany`, deletes with `IN (…)`. Under
`skipInvalid` the failing items are simply left out of the write.
"""

from dataclasses import dataclass, field

from peewee import fn

from api.entities import ENTITIES
from api.entities.base import Entity
from api.errors import ValidationFailed
from api.ids import new_id
from api.services import events
from api.services.records import service_for
from api.store import db, execute_many, ids_of_account, insert_rows, transaction
from api.timeutil import utcnow

IN_CHUNK = 500


@dataclass
class Failure:
    index: int
    item: object
    error: str
    code: str
    details: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"index": self.index, "item": self.item, "error": self.error, "code": self.code,
                "details": self.details}


@dataclass
class BulkResult:
    """What a bulk write did: the rows written and the items that failed."""

    rows: list
    failures: list[Failure]
    data: list[dict] | None = None


def _chunks(values: list, size: int):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _invalid(index: int, item, exc: ValidationFailed) -> Failure:
    details = exc.details or {}
    message = "; ".join(f"{path}: {' '.join(messages)}" for path, messages in details.items())
    return Failure(index, item, message or exc.message, "VALIDATION_FAILED", details)


def all_or_nothing(failures: list[Failure], list_name: str) -> None:
    """Raise one 400 listing every failing item's errors as `<list>.<index>.<field>`."""
    details = {}
    for failure in failures:
        for path, messages in (failure.details or {"_item": [failure.error]}).items():
            details[f"{list_name}.{failure.index}.{path}"] = messages
    raise ValidationFailed(details, f"{len(failures)} of the {list_name} failed validation; "
                                    "nothing was written.")


def existing_ids(entity: Entity, account_id: str, ids) -> set[str]:
    """Which of `ids` are records of `entity` in the account (one query per 500 ids)."""
    model = entity.model
    found = set()
    for chunk in _chunks(sorted(set(ids)), IN_CHUNK):
        query = model.select(model.id).where(ids_of_account(account_id, chunk))
        found.update(row.id for row in query)
    return found


def _check_references(entity: Entity, account_id: str, candidates: dict[int, dict],
                      failures: list[Failure], items: list) -> None:
    """Drop candidates whose references are missing: one query per relation."""
    for relation in entity.relations:
        wanted = {v[relation.attribute] for v in candidates.values() if v.get(relation.attribute)}
        if not wanted:
            continue
        target = ENTITIES[relation.target]
        found = existing_ids(target, account_id, wanted)
        json_name = _json_name(entity, relation.attribute)
        for index, values in list(candidates.items()):
            ref = values.get(relation.attribute)
            if ref and ref not in found:
                message = f"{target.title} {ref} does not exist."
                failures.append(Failure(index, items[index], message, "VALIDATION_FAILED",
                                        {json_name: [message]}))
                del candidates[index]


def _check_unique(entity: Entity, account_id: str, candidates: dict[int, dict],
                  failures: list[Failure], items: list) -> None:
    """Drop candidates colliding on a unique field, with stored rows or an earlier item.

    An update (a candidate with an `id`) may keep its own value; a value held by any
    other stored row is taken, even when that row is changed later in the same request
    (the rows are written one by one, so the holder still has it when this one is).
    """
    model = entity.model
    for json_name in entity.unique:
        attribute = entity.fields[json_name].attribute
        column = getattr(model, attribute)
        wanted = {v[attribute].lower() for v in candidates.values() if v.get(attribute)}
        taken: dict[str, set] = {}
        for chunk in _chunks(sorted(wanted), IN_CHUNK):
            query = model.select(model.id, fn.LOWER(column).alias("value")).where(
                (model.account_id == account_id) & fn.LOWER(column).in_(chunk))
            for row in query:
                taken.setdefault(row.value, set()).add(row.id)
        for index in sorted(candidates):
            value = candidates[index].get(attribute)
            if not value:
                continue
            holder = candidates[index].get("id", index)  # a new record is known by its index
            if taken.get(value.lower(), set()) - {holder}:
                message = f"{json_name} {value!r} is already in use."
                failures.append(Failure(index, items[index], message, "CONFLICT",
                                        {json_name: ["Already in use."]}))
                del candidates[index]
            else:
                taken.setdefault(value.lower(), set()).add(holder)


def _json_name(entity: Entity, attribute: str) -> str:
    return next(s.json_name for s in entity.fields.values() if s.attribute == attribute)


def bulk_create(entity: Entity, account_id: str, items: list, skip_invalid: bool) -> BulkResult:
    """Create many records; failing items are reported (skip_invalid) or fail everything."""
    service = service_for(entity.name)
    failures: list[Failure] = []
    candidates: dict[int, dict] = {}
    objects = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            objects.append(index)
        else:
            failures.append(Failure(index, item, "Each item must be a JSON object.",
                                    "VALIDATION_FAILED", {"_schema": ["Must be a JSON object."]}))
    validated = service.validate_many([items[index] for index in objects], partial=False)
    for index, values in zip(objects, validated):
        if isinstance(values, ValidationFailed):
            failures.append(_invalid(index, items[index], values))
        else:
            candidates[index] = values
    with transaction():
        _check_references(entity, account_id, candidates, failures, items)
        _check_unique(entity, account_id, candidates, failures, items)
        failures.sort(key=lambda f: f.index)
        if failures and not skip_invalid:
            all_or_nothing(failures, "items")
        now = utcnow()
        rows = []
        for index in sorted(candidates):
            values = candidates[index]
            if entity.before_write:
                entity.before_write(values, None)
            rows.append({"id": new_id(entity.prefix), "account_id": account_id, "version": 1,
                         "created_at": now, "updated_at": now, **values})
        columns = sorted({name for row in rows for name in row})
        service.write(lambda: insert_rows(entity.model, rows, columns))
        data = [entity.dump(row) for row in rows]
        events.emit(account_id, f"{entity.name}.created", data)
    return BulkResult(rows, failures, data)


def bulk_update(entity: Entity, account_id: str, updates: list, skip_invalid: bool) -> BulkResult:
    """Update many records by id; unknown or foreign ids are `NOT_FOUND` failures."""
    service = service_for(entity.name)
    failures: list[Failure] = []
    candidates: dict[int, dict] = {}
    seen: set[str] = set()
    for index, item in enumerate(updates):
        record_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(record_id, str) or not record_id:
            failures.append(Failure(index, item, "Each update needs an `id`.", "VALIDATION_FAILED",
                                    {"id": ["Missing data for required field."]}))
            continue
        if record_id in seen:
            failures.append(Failure(index, item, f"{record_id} appears more than once.",
                                    "VALIDATION_FAILED", {"id": ["Duplicate id in this request."]}))
            continue
        seen.add(record_id)
        try:
            values = service.validate({k: v for k, v in item.items() if k != "id"}, partial=True)
        except ValidationFailed as exc:
            failures.append(_invalid(index, item, exc))
            continue
        candidates[index] = {**values, "id": record_id}
    with transaction():
        current = _current_rows(entity, account_id, [v["id"] for v in candidates.values()])
        for index in sorted(candidates):
            record_id = candidates[index]["id"]
            if record_id not in current:
                failures.append(Failure(index, updates[index], f"{entity.title} {record_id} not found.",
                                        "NOT_FOUND", {"id": ["Not found."]}))
                del candidates[index]
        _check_references(entity, account_id, candidates, failures, updates)
        _check_unique(entity, account_id, candidates, failures, updates)
        failures.sort(key=lambda f: f.index)
        if failures and not skip_invalid:
            all_or_nothing(failures, "updates")
        now = utcnow()
        rows, changed, previous, groups = [], [], [], {}
        for index in sorted(candidates):
            values = dict(candidates[index])
            row = current[values.pop("id")]
            if entity.before_write:
                entity.before_write(values, row.__data__)
            rows.append(row)
            before = entity.previous_attributes(row.__data__, values)
            if not before:
                continue
            values.update(updated_at=now, version=row.version + 1)
            groups.setdefault(tuple(sorted(values)), []).append((row.id, values))
            for name, value in values.items():
                setattr(row, name, value)
            changed.append(row)
            previous.append(before)
        for columns, members in groups.items():
            _execute_many_updates(entity, columns, members)
        events.emit(account_id, f"{entity.name}.updated", [entity.dump(r) for r in changed], previous)
    return BulkResult(rows, failures)


def _current_rows(entity: Entity, account_id: str, ids: list[str]) -> dict:
    model = entity.model
    rows = {}
    for chunk in _chunks(sorted(set(ids)), IN_CHUNK):
        query = model.select().where(ids_of_account(account_id, chunk))
        rows.update({row.id: row for row in query})
    return rows


def _execute_many_updates(entity: Entity, columns: tuple, members: list) -> None:
    """One `UPDATE … WHERE id = ?` statement, executed for every member in one round of executemany."""
    model = entity.model
    param = db.obj.param
    table = model._meta.table_name
    assignments = ", ".join(f'"{model._meta.fields[c].column_name}" = {param}' for c in columns)
    sql = f'UPDATE "{table}" SET {assignments} WHERE "id" = {param}'
    params = [[model._meta.fields[c].db_value(values[c]) for c in columns] + [record_id]
              for record_id, values in members]
    service_for(entity.name).write(lambda: execute_many(sql, params))


def bulk_delete(entity: Entity, account_id: str, ids: list[str]) -> tuple[list, list[str]]:
    """Delete the records among `ids` (with their cascades); returns (deleted rows, not found ids)."""
    model = entity.model
    with transaction():
        current = _current_rows(entity, account_id, ids)
        found = list(current)
        if found:
            for chunk in _chunks(found, IN_CHUNK):
                service_for(entity.name).detach_dependents(account_id, chunk)
                model.delete().where(model.id.in_(chunk)).execute()
            events.emit(account_id, f"{entity.name}.deleted",
                        [entity.dump(r) for r in current.values()])
    not_found = list(dict.fromkeys(i for i in ids if i not in current))
    return list(current.values()), not_found

