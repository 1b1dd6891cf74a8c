"""Marshmallow fields shared by entity and request schemas."""

from datetime import datetime

from marshmallow import ValidationError, fields

from api.timeutil import format_rfc3339, parse_rfc3339, to_utc


class StrictBoolean(fields.Boolean):
    """JSON `true` or `false` only (`1`, `0` and `"true"` are refused: `1 in {True}` holds)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Text(fields.String):
    """A string that the database can store: no NUL, no lone surrogates."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError("Must be valid Unicode text.") from exc
        return text


class Timestamp(fields.Field):
    """An RFC 3339 timestamp; offsets accepted and stored as naive UTC."""

    default_error_messages = {"invalid": "Not a valid RFC 3339 timestamp."}

    def _serialize(self, value, attr, obj, **kwargs):
        return format_rfc3339(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, datetime):
            return to_utc(value)
        try:
            parsed = parse_rfc3339(value)
        except (TypeError, ValueError) as exc:
            raise self.make_error("invalid") from exc
        if not 1 <= parsed.year <= 9999:
            raise self.make_error("invalid")
        return parsed


class Ref(Text):
    """The id of another record of the same account (checked by the service); never empty
    (null, where allowed, is how a reference is cleared)."""

    def __init__(self, target: str, **kwargs):
        self.target = target
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text:
            raise ValidationError("Must name a record (use null for none).")
        return text
