"""Bulk create, update and delete: the bulk routes' items, shaped for the write engine.

The engine (`api.services.writes`) validates, locks, checks and writes every
item in one transaction and reports the items that fail; this module adds
what only a list of items can get wrong (an update without an `id`, an id
twice) and the bulk policy: under `skipInvalid` the failing items are left
out of the write, otherwise any failure is one 400 and nothing is written.
"""

from api.entities.base import Entity
from api.errors import ValidationFailed
from api.services.writes import Change, Failure, WriteResult, writer_for


def all_or_nothing(failures: list[Failure], list_name: str) -> None:
    """Raise one 400 listing every failing item's errors as `<list>.<index>.<field>`."""
    details = {}
    for failure in failures:
        for path, messages in (failure.details or {"_item": [failure.error]}).items():
            details[f"{list_name}.{failure.index}.{path}"] = messages
    raise ValidationFailed(details, f"{len(failures)} of the {list_name} failed validation; "
                                    "nothing was written.")


def _policy(skip_invalid: bool, list_name: str):
    return None if skip_invalid else (lambda failures: all_or_nothing(failures, list_name))


def bulk_create(entity: Entity, account_id: str, items: list, skip_invalid: bool) -> WriteResult:
    """Create many records; failing items are reported (skip_invalid) or fail everything."""
    return writer_for(entity.name).create_many(account_id, items, _policy(skip_invalid, "items"))


def bulk_update(entity: Entity, account_id: str, updates: list, skip_invalid: bool) -> WriteResult:
    """Update many records by id; unknown or foreign ids are `NOT_FOUND` failures."""
    failures: list[Failure] = []
    changes: list[Change] = []
    seen: set[str] = set()
    for index, item in enumerate(updates):
        record_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(record_id, str) or not record_id:
            failures.append(Failure.of(index, item, ValidationFailed(
                {"id": ["Missing data for required field."]}, "Each update needs an `id`.")))
        elif record_id in seen:
            failures.append(Failure.of(index, item, ValidationFailed(
                {"id": ["Duplicate id in this request."]}, f"{record_id} appears more than once.")))
        else:
            seen.add(record_id)
            payload = {k: v for k, v in item.items() if k != "id"}
            changes.append(Change(index, record_id, payload, item=item))
    return writer_for(entity.name).update_many(account_id, changes, _policy(skip_invalid, "updates"),
                                               failures=failures)


def bulk_delete(entity: Entity, account_id: str, ids: list[str]) -> tuple[list, list[str]]:
    """Delete the records among `ids` (with their cascades); returns (deleted rows, not found ids)."""
    unique = list(dict.fromkeys(ids))
    targets = [Change(index, record_id, {}) for index, record_id in enumerate(unique)]
    result = writer_for(entity.name).delete_many(account_id, targets, None)
    return result.rows, [unique[f.index] for f in result.failures]
