"""Accounts and their API keys: creation, listing and revocation."""

from limits import parse_many
from marshmallow import Schema, ValidationError, fields, validate, validates

from api.errors import NotFound, ValidationFailed, flatten_messages
from api.fields import Text, Timestamp
from api.ids import new_id
from api.models import Account, ApiKey
from api.services import keys
from api.services.keys import SCOPES, generate_key, hash_key, visible_prefix
from api.store import transaction
from api.timeutil import utcnow

_LIMIT = "[1-9][0-9]{0,8}/(second|minute|hour|day|month|year)"
RATE_LIMIT_PATTERN = f"^{_LIMIT}(;{_LIMIT})*$"  # documented: `@validates` below is the check


class ApiKeySchema(Schema):
    """An API key as shown to clients (never its secret, except once at creation)."""

    id = fields.String(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 200))
    prefix = fields.String(dump_only=True)
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), required=True,
                         validate=validate.Length(min=1), metadata={"uniqueItems": True})
    rateLimit = Text(attribute="rate_limit", allow_none=True, load_default=None,
                     validate=validate.Length(max=200), metadata={
                         "example": "100/minute;2000/hour", "pattern": RATE_LIMIT_PATTERN,
                         "description": "Limits like `100/minute;2000/hour` (the `limits` "
                                        "library's notation; `100 per minute` works too)."})
    createdAt = Timestamp(attribute="created_at", dump_only=True)
    lastUsedAt = Timestamp(attribute="last_used_at", dump_only=True, allow_none=True)
    revokedAt = Timestamp(attribute="revoked_at", dump_only=True, allow_none=True)

    @validates("scopes")
    def _unique_scopes(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("Scopes must not repeat.")

    @validates("rateLimit")
    def _parse_rate_limit(self, value, **kwargs):
        if value is None:
            return
        try:
            limits = parse_many(value)
        except ValueError as exc:
            raise ValidationError("Not a rate limit like '100/minute;2000/hour'.") from exc
        if any(limit.amount < 1 for limit in limits):
            raise ValidationError("Every limit must allow at least one request.")


class CreatedApiKeySchema(ApiKeySchema):
    key = fields.String(dump_only=True, metadata={"description": "The secret, shown only once."})


def serialize_key(row: ApiKey) -> dict:
    data = ApiKeySchema().dump(row)
    data["scopes"] = row.scopes.split(",")
    return data


def create_key(account_id: str, name: str, scopes: list[str],
               rate_limit: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key for the account; returns the row and the secret (shown once)."""
    secret = generate_key()
    row = ApiKey.create(
        id=new_id("key"), account_id=account_id, name=name, prefix=visible_prefix(secret),
        key_hash=hash_key(secret), scopes=",".join(scopes), rate_limit=rate_limit,
        created_at=utcnow(),
    )
    return row, secret


def create_key_from_payload(account_id: str, payload: dict) -> tuple[ApiKey, str]:
    """Validate a `POST /api-keys` body and create the key."""
    try:
        values = ApiKeySchema().load(payload)
    except ValidationError as exc:
        raise ValidationFailed(flatten_messages(exc.messages)) from exc
    return create_key(account_id, values["name"], values["scopes"], values["rate_limit"])


def create_account(name: str, key_name: str = "admin") -> tuple[Account, str]:
    """A new account and its first admin key; returns the account and the key's secret."""
    with transaction():
        account = Account.create(id=new_id("acc"), name=name, created_at=utcnow())
        _, secret = create_key(account.id, key_name, ["admin"])
    return account, secret


def list_keys(account_id: str) -> list[ApiKey]:
    return list(ApiKey.select().where(ApiKey.account_id == account_id)
                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))


def get_key(account_id: str, key_id: str) -> ApiKey:
    row = ApiKey.get_or_none((ApiKey.id == key_id) & (ApiKey.account_id == account_id))
    if row is None:
        raise NotFound(f"API key {key_id} not found.")
    return row


def revoke_key(account_id: str, key_id: str) -> ApiKey:
    """Revoke at once: the next request with this key is a 401."""
    row = get_key(account_id, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        ApiKey.update(revoked_at=row.revoked_at).where(ApiKey.id == row.id).execute()
    keys.announce_change(row)
    return row


def revoke_keys_named(account_id: str, name: str) -> int:
    """Revoke every live key of the account called `name`; returns how many."""
    live = list(ApiKey.select().where((ApiKey.account_id == account_id) & (ApiKey.name == name)
                                      & ApiKey.revoked_at.is_null()))
    ApiKey.update(revoked_at=utcnow()).where(ApiKey.id.in_([k.id for k in live])).execute()
    for row in live:
        keys.announce_change(row)
    return len(live)
