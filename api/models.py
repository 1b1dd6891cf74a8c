"""Tables that are not entities: accounts and their API keys."""

import peewee

from api.entities.base import BaseModel


class Account(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    name = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "accounts"


class ApiKey(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    name = peewee.CharField(max_length=200)
    prefix = peewee.CharField(max_length=20)
    key_hash = peewee.CharField(max_length=64, unique=True)
    scopes = peewee.CharField(max_length=100)
    rate_limit = peewee.CharField(max_length=200, null=True)
    created_at = peewee.DateTimeField()
    last_used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_keys"
