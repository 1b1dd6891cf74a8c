"""What every record service of one entity shares: its schemas, validation and error mapping."""

import peewee
from marshmallow import ValidationError

from api.entities.base import Entity
from api.errors import Conflict, ValidationFailed, flatten_messages


class Validator:
    """An entity's schemas, and how its bodies and integrity errors become contract errors."""

    def __init__(self, entity: Entity):
        self.entity = entity
        self.model = entity.model
        self.schema = entity.schema()
        self.partial_schema = entity.schema(partial=True)

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

    def json_name(self, attribute: str) -> str:
        """The JSON name of a column attribute."""
        return next(s.json_name for s in self.entity.fields.values() if s.attribute == attribute)

    def write(self, operation):
        """Run a write, turning integrity errors into 409 (unique) or 400 (vanished reference)."""
        try:
            return operation()
        except peewee.IntegrityError as exc:
            message = str(exc).lower()
            if "unique" in message or "duplicate" in message:
                raise Conflict(f"A {self.entity.name} with these values already exists.",
                               {name: ["Already in use."] for name in self.entity.unique}) from exc
            raise ValidationFailed({"_schema": ["A referenced record no longer exists."]}) from exc
