"""List queries: parse `page/limit/cursor/sort/filters/q/fields/expand` and turn them into SQL.

Everything a list route accepts is checked here against the entity declaration;
anything unknown or ill-typed is a 400 with the parameter named in `details`.
Filtering, search, sorting and keyset pagination all happen in SQL. Enum fields sort
and compare (`lt`/`lte`/`gt`/`gte`, cursors) by their declared rank, not alphabetically:
`low < medium < high`, `todo < in_progress < completed`.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

import peewee
from peewee import SQL, NodeList

from api.entities.base import Entity, FieldSpec
from api.errors import ValidationFailed
from api.store import is_postgres
from api.timeutil import format_rfc3339, parse_rfc3339

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_PAGE = 1_000_000
MAX_VALUE_LENGTH = 1000
MAX_LIST_VALUES = 100
LIST_PARAMS = ("page", "limit", "cursor", "sort", "q", "fields", "expand")
SINGLE_PARAMS = ("fields", "expand")
_FILTER_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\[([a-z]+)\])?$")
_TRUE_FALSE = {"true": True, "false": False}


@dataclass
class Filter:
    spec: FieldSpec
    op: str
    value: object


@dataclass
class ListQuery:
    """A parsed, validated list request."""

    page: int = 1
    limit: int = DEFAULT_LIMIT
    cursor: dict | None = None
    sort: list[tuple[str, bool]] = field(default_factory=lambda: [("createdAt", True)])
    filters: list[Filter] = field(default_factory=list)
    q: str | None = None
    fields: list[str] | None = None
    expand: list[str] = field(default_factory=list)

    @property
    def sort_text(self) -> str:
        return ",".join(("-" if desc else "") + name for name, desc in self.sort)


class _Errors(dict):
    def add(self, key: str, message: str) -> None:
        self.setdefault(key, []).append(message)


def _single(args, key: str, errors: _Errors) -> str | None:
    values = args.getlist(key)
    if len(values) > 1:
        errors.add(key, "Give this parameter only once.")
    return values[0] if values else None


def _int_param(raw: str | None, key: str, low: int, high: int, errors: _Errors) -> int | None:
    if raw is None:
        return None
    if not re.fullmatch(r"\d{1,9}", raw.strip()) or not low <= int(raw) <= high:
        errors.add(key, f"Must be an integer between {low} and {high}.")
        return None
    return int(raw)


def _name_list(raw: str, allowed, key: str, errors: _Errors) -> list[str]:
    names = [n.strip() for n in raw.split(",")]
    if not raw.strip() or any(not n for n in names):
        errors.add(key, "Must be a comma-separated list of names.")
        return []
    unknown = [n for n in names if n not in allowed]
    if unknown:
        errors.add(key, f"Unknown: {', '.join(unknown[:10])}. Allowed: {', '.join(allowed)}.")
    if len(set(names)) != len(names):
        errors.add(key, "Names must not repeat.")
    return names


def convert_value(spec: FieldSpec, raw: str):
    """A query-string value as the Python value for `spec`'s column; ValueError if ill-typed."""
    if len(raw) > MAX_VALUE_LENGTH:
        raise ValueError(f"Must be at most {MAX_VALUE_LENGTH} characters.")
    if "\x00" in raw:
        raise ValueError("Must not contain NUL characters.")
    if spec.kind == "datetime":
        return parse_rfc3339(raw)
    if spec.kind == "int":
        return int(raw)
    if spec.kind == "bool":
        if raw not in _TRUE_FALSE:
            raise ValueError("Must be true or false.")
        return _TRUE_FALSE[raw]
    if spec.kind == "enum" and raw not in spec.choices:
        raise ValueError(f"Must be one of: {', '.join(spec.choices)}.")
    return raw


def _parse_filter(entity: Entity, key: str, values: list[str], errors: _Errors) -> Filter | None:
    match = _FILTER_KEY.match(key)
    spec = entity.fields.get(match.group(1)) if match else None
    if spec is None:
        errors.add(key, "Unknown query parameter.")
        return None
    op = match.group(2) or "eq"
    if op not in spec.operators:
        errors.add(key, f"Unknown operator. Allowed for {spec.json_name}: {', '.join(spec.operators)}.")
        return None
    if len(values) > 1:
        errors.add(key, "Give this parameter only once.")
        return None
    raw = values[0]
    try:
        if op == "isnull":
            if raw not in _TRUE_FALSE:
                raise ValueError("Must be true or false.")
            value = _TRUE_FALSE[raw]
        elif op in ("in", "nin"):
            parts = raw.split(",")
            if not raw or len(parts) > MAX_LIST_VALUES:
                raise ValueError(f"Must be a comma-separated list of 1 to {MAX_LIST_VALUES} values.")
            value = [convert_value(spec, part) for part in parts]
        elif op == "contains":
            value = convert_value(FieldSpec(spec.json_name, spec.attribute, "text"), raw)
        else:
            value = convert_value(spec, raw)
    except ValueError as exc:
        errors.add(key, str(exc) if str(exc) else "Invalid value.")
        return None
    return Filter(spec, op, value)


def page_args(args, allowed: tuple[str, ...] = ()) -> tuple[int, int, _Errors]:
    """`page` and `limit` of a simple paginated list, with errors for anything not `allowed`.

    The caller adds its own checks to the returned errors and raises if there are any.
    """
    errors = _Errors()
    for key in args:
        if key not in ("page", "limit", *allowed):
            errors.add(key, "Unknown query parameter.")
    page = _int_param(_single(args, "page", errors), "page", 1, MAX_PAGE, errors)
    limit = _int_param(_single(args, "limit", errors), "limit", 1, MAX_LIMIT, errors)
    return page or 1, limit or DEFAULT_LIMIT, errors


def page_meta(page: int, limit: int, total: int, has_next: bool) -> dict:
    """`meta` of a page-numbered list (no cursor)."""
    return {"page": page, "limit": limit, "total": total, "hasNextPage": has_next,
            "hasPreviousPage": page > 1, "nextCursor": None}


def parse_filters(entity: Entity, args, errors: _Errors, skip=()) -> list[Filter]:
    """The filters among `args` (every key not in `skip`)."""
    filters = []
    for key in args:
        if key in skip:
            continue
        parsed = _parse_filter(entity, key, args.getlist(key), errors)
        if parsed:
            filters.append(parsed)
    return filters


def parse_list_args(entity: Entity, args, extra: tuple[str, ...] = ()) -> ListQuery:
    """Validate a list route's query string against `entity`; 400 on anything unknown."""
    errors = _Errors()
    lq = ListQuery()
    page = _int_param(_single(args, "page", errors), "page", 1, MAX_PAGE, errors)
    limit = _int_param(_single(args, "limit", errors), "limit", 1, MAX_LIMIT, errors)
    lq.page = page or 1
    lq.limit = limit or DEFAULT_LIMIT
    sort = _single(args, "sort", errors)
    if sort is not None:
        lq.sort = _parse_sort(entity, sort, errors)
    cursor = _single(args, "cursor", errors)
    if cursor is not None:
        if page is not None:
            errors.add("cursor", "Use either page or cursor, not both.")
        lq.cursor = decode_cursor(entity, cursor, lq.sort_text, errors)
    q = _single(args, "q", errors)
    if q is not None:
        if len(q) > 200 or "\x00" in q:
            errors.add("q", "Must be at most 200 characters of text.")
        lq.q = q
    lq.fields, lq.expand = parse_shape(entity, args, errors)
    lq.filters = parse_filters(entity, args, errors, skip=LIST_PARAMS + extra)
    if errors:
        raise ValidationFailed(dict(errors), "Invalid query parameters.")
    return lq


def parse_shape(entity: Entity, args, errors: _Errors | None = None):
    """`fields` and `expand` (also accepted on single-record routes)."""
    own_errors = errors is None
    errors = _Errors() if own_errors else errors
    fields_raw = _single(args, "fields", errors)
    expand_raw = _single(args, "expand", errors)
    relation_names = [r.name for r in entity.relations]
    fields = None
    if fields_raw is not None:
        fields = _name_list(fields_raw, list(entity.fields) + relation_names, "fields", errors)
    expand = _name_list(expand_raw, relation_names, "expand", errors) if expand_raw is not None else []
    if own_errors:
        unknown = [k for k in args if k not in SINGLE_PARAMS]
        for key in unknown:
            errors.add(key, "Unknown query parameter.")
        if errors:
            raise ValidationFailed(dict(errors), "Invalid query parameters.")
    return fields, expand


def _parse_sort(entity: Entity, raw: str, errors: _Errors) -> list[tuple[str, bool]]:
    parts = [part.strip() for part in raw.split(",")]
    bare = ",".join(part[1:] if part.startswith(("-", "+")) else part for part in parts)
    names = _name_list(bare, entity.sortable, "sort", errors)
    if not names:
        return [("createdAt", True)]
    return [(name, part.startswith("-")) for name, part in zip(names, parts)]


def encode_cursor(sort_text: str, values: list, last_id: str) -> str:
    """An opaque cursor naming the last row seen under `sort_text`."""
    payload = json.dumps({"s": sort_text, "v": values, "id": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(entity: Entity, raw: str, sort_text: str, errors: _Errors) -> dict | None:
    """The cursor's contents, checked against the current sort; 400 when malformed."""
    try:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,8192}", raw):
            raise ValueError
        padded = raw + "=" * (-len(raw) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not (isinstance(payload, dict) and isinstance(payload.get("v"), list)
                and isinstance(payload.get("id"), str) and isinstance(payload.get("s"), str)):
            raise ValueError
        if "\x00" in payload["id"] or len(payload["id"]) > 100:
            raise ValueError
        json.dumps(payload, ensure_ascii=False).encode("utf-8")  # no lone surrogates anywhere
        if payload["s"] != sort_text:
            errors.add("cursor", "This cursor belongs to another sort order.")
            return None
        names = [name for name, _ in parse_sort_text(payload["s"])]
        if len(payload["v"]) != len(names):
            raise ValueError
        values = []
        for name, value in zip(names, payload["v"]):
            spec = entity.fields[name]
            if value is not None and not isinstance(value, str):
                raise ValueError
            values.append(None if value is None else convert_value(spec, value))
        return {"values": values, "id": payload["id"]}
    except (ValueError, UnicodeError, binascii.Error, KeyError, TypeError, RecursionError):
        errors.add("cursor", "Malformed cursor.")
        return None


def parse_sort_text(text: str) -> list[tuple[str, bool]]:
    return [(part.lstrip("-"), part.startswith("-")) for part in text.split(",")]


def cursor_values(entity: Entity, lq: ListQuery, row) -> list:
    """The sort-key values of `row`, as strings for a cursor."""
    values = []
    for name, _ in lq.sort:
        value = getattr(row, entity.fields[name].attribute)
        values.append(format_rfc3339(value) if entity.fields[name].kind == "datetime" else value)
    return values


def column(entity: Entity, spec: FieldSpec):
    return getattr(entity.model, spec.attribute)


def sort_key(entity: Entity, spec: FieldSpec):
    """What a field orders and compares by: an enum by its declared rank, anything else as is."""
    col = column(entity, spec)
    if spec.kind != "enum":
        return col
    return peewee.Case(col, [(choice, rank) for rank, choice in enumerate(spec.choices)])


def sort_value(spec: FieldSpec, value):
    """`value` as `sort_key` compares it (an enum value's rank)."""
    return spec.choices.index(value) if spec.kind == "enum" and value is not None else value


def _like_pattern(text: str) -> str:
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped.lower()}%"


def contains(col, text: str):
    """Case-insensitive substring match, with LIKE wildcards in `text` taken literally."""
    if is_postgres():
        return NodeList((col, SQL("ILIKE"), _like_pattern(text), SQL("ESCAPE '!'")))
    return NodeList((peewee.fn.quiver_lower(col), SQL("LIKE"), _like_pattern(text),
                     SQL("ESCAPE '!'")))


def filter_expression(entity: Entity, flt: Filter):
    """The SQL condition for one filter."""
    col = column(entity, flt.spec)
    op, value = flt.op, flt.value
    if op in ("lt", "lte", "gt", "gte"):
        col, value = sort_key(entity, flt.spec), sort_value(flt.spec, value)
    if op == "eq":
        return col == value
    if op == "ne":
        return (col != value) | col.is_null()
    if op == "lt":
        return col < value
    if op == "lte":
        return col <= value
    if op == "gt":
        return col > value
    if op == "gte":
        return col >= value
    if op == "in":
        return col.in_(value)
    if op == "nin":
        return col.not_in(value) | col.is_null()
    if op == "contains":
        return contains(col, value)
    return col.is_null(value)


def search_expression(entity: Entity, text: str):
    """`q`: a case-insensitive substring of any searchable field."""
    expression = None
    for name in entity.searchable:
        term = contains(column(entity, entity.fields[name]), text)
        expression = term if expression is None else (expression | term)
    return expression


def order_by(entity: Entity, lq: ListQuery) -> list:
    """ORDER BY terms: the requested sort, nulls last, then id as the tie-breaker."""
    terms = []
    for name, desc in lq.sort:
        col = sort_key(entity, entity.fields[name])
        terms.append(col.desc(nulls="LAST") if desc else col.asc(nulls="LAST"))
    tie_desc = lq.sort[-1][1]
    terms.append(entity.model.id.desc() if tie_desc else entity.model.id.asc())
    return terms


def keyset_condition(entity: Entity, lq: ListQuery):
    """Rows strictly after the cursor's row in the ORDER BY of `order_by`."""
    keys = [(sort_key(entity, entity.fields[name]), desc) for name, desc in lq.sort]
    keys.append((entity.model.id, lq.sort[-1][1]))
    values = [sort_value(entity.fields[name], value)
              for (name, _), value in zip(lq.sort, lq.cursor["values"])] + [lq.cursor["id"]]
    condition = None
    for i, (col, desc) in enumerate(keys):
        term = _after(col, desc, values[i])
        for prev_col, prev_value in zip((k[0] for k in keys[:i]), values[:i]):
            term = term & (prev_col.is_null() if prev_value is None else prev_col == prev_value)
        condition = term if condition is None else condition | term
    return condition


def _after(col, desc: bool, value):
    if value is None:
        return SQL("1 = 0")
    return ((col < value) if desc else (col > value)) | col.is_null()
