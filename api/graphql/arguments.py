"""List arguments (`page`, `limit`, `cursor`, `sort`, `q`, `filter`) as the REST list query.

Page, limit, cursor, sort and search go through the REST parser unchanged, so they
accept and refuse exactly what the query string does. A filter input has, per
field, the field itself for `eq` (`status: "todo"`) and one suffixed field per other
operator (`statusNe`, `priorityIn`, `dueAtLt`, `assigneeIdIsnull`, `titleContains`).
"""

from functools import cache

from werkzeug.datastructures import MultiDict

from api.entities.base import Entity, FieldSpec
from api.errors import ValidationFailed
from api.graphql.names import pascal
from api.query import MAX_LIST_VALUES, Filter, ListQuery, convert_value, parse_list_args

_TEXT_ARGUMENTS = ("page", "limit", "cursor", "q")


@cache
def filter_fields(entity: Entity) -> dict[str, tuple[FieldSpec, str]]:
    """The filter input's field names, each with the field and operator it stands for."""
    fields = {}
    for spec in entity.fields.values():
        for op in spec.operators:
            fields[spec.json_name if op == "eq" else spec.json_name + pascal(op)] = (spec, op)
    return fields


def list_query(entity: Entity, args: dict) -> ListQuery:
    """The validated `ListQuery` for a list field's arguments; 400-style error on bad ones."""
    raw = MultiDict({name: str(args[name]) for name in _TEXT_ARGUMENTS if args.get(name) is not None})
    if args.get("sort"):
        raw["sort"] = ",".join(args["sort"])
    errors: dict[str, list[str]] = {}
    try:
        lq = parse_list_args(entity, raw)
    except ValidationFailed as exc:
        errors.update(exc.details)
        lq = None
    filters = _filters(entity, args.get("filter") or {}, errors)
    if errors:
        raise ValidationFailed(errors, "Invalid arguments.")
    lq.filters = filters
    return lq


def _filters(entity: Entity, given: dict, errors: dict) -> list[Filter]:
    known = filter_fields(entity)
    filters = []
    for name, value in given.items():
        if value is None:
            continue
        spec, op = known[name]
        try:
            filters.append(Filter(spec, op, _filter_value(spec, op, value)))
        except ValueError as exc:
            errors.setdefault(f"filter.{name}", []).append(str(exc) or "Invalid value.")
    return filters


def _filter_value(spec: FieldSpec, op: str, value):
    if op == "isnull":
        return value
    if op in ("in", "nin"):
        if not 1 <= len(value) <= MAX_LIST_VALUES:
            raise ValueError(f"Must be a list of 1 to {MAX_LIST_VALUES} values.")
        return [_scalar(spec, item) for item in value]
    if op == "contains":
        return convert_value(FieldSpec(spec.json_name, spec.attribute, "text"), value)
    return _scalar(spec, value)


def _scalar(spec: FieldSpec, value):
    """GraphQL already typed ints and booleans; text, ids, enums and timestamps are checked here."""
    return value if spec.kind in ("int", "bool") else convert_value(spec, value)
