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


class Event(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    type = peewee.CharField(max_length=100)
    created_at = peewee.DateTimeField()
    data = peewee.TextField()
    previous = peewee.TextField(null=True)
    position = peewee.BigIntegerField(null=True)

    class Meta:
        table_name = "events"


class EventHead(BaseModel):
    """An account's last event position (see `api/services/events.py`)."""

    account_id = peewee.CharField(primary_key=True, max_length=40)
    position = peewee.BigIntegerField()

    class Meta:
        table_name = "event_heads"


class Webhook(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    url = peewee.CharField(max_length=2048)
    events = peewee.TextField()
    description = peewee.TextField(null=True)
    secret = peewee.CharField(max_length=200)
    previous_secret = peewee.CharField(max_length=200, null=True)
    previous_secret_expires_at = peewee.DateTimeField(null=True)
    active = peewee.BooleanField(default=True)
    disabled_reason = peewee.CharField(max_length=200, null=True)
    failing_since = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "webhooks"


class WebhookDelivery(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    webhook_id = peewee.CharField(max_length=40)
    event_id = peewee.CharField(max_length=40)
    attempt = peewee.IntegerField(default=1)
    status = peewee.CharField(max_length=20, default="pending")
    response_status = peewee.IntegerField(null=True)
    response_body = peewee.TextField(null=True)
    duration_ms = peewee.IntegerField(null=True)
    error = peewee.TextField(null=True)
    next_attempt_at = peewee.DateTimeField(null=True)
    lease_token = peewee.CharField(max_length=40, null=True)
    locked_until = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "webhook_deliveries"


class IdempotencyRecord(BaseModel):
    id = peewee.AutoField()
    account_id = peewee.CharField(max_length=40)
    key = peewee.CharField(max_length=255)
    fingerprint = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=20)
    response_status = peewee.IntegerField(null=True)
    response_headers = peewee.TextField(null=True)
    response_body = peewee.BlobField(null=True)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()

    class Meta:
        table_name = "idempotency_keys"


class Blob(BaseModel):
    sha256 = peewee.CharField(primary_key=True, max_length=64)
    size = peewee.BigIntegerField()
    refs = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "blobs"


class File(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    task_id = peewee.CharField(max_length=40, null=True)
    filename = peewee.CharField(max_length=255)
    size = peewee.BigIntegerField()
    content_type = peewee.CharField(max_length=100)
    sha256 = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "files"


class TusUpload(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    length = peewee.BigIntegerField()
    offset = peewee.BigIntegerField(default=0)
    metadata = peewee.TextField()
    file_id = peewee.CharField(max_length=40, null=True)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()

    class Meta:
        table_name = "tus_uploads"


class Job(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    type = peewee.CharField(max_length=20)
    entity = peewee.CharField(max_length=40)
    status = peewee.CharField(max_length=20)
    params = peewee.TextField()
    progress_done = peewee.BigIntegerField(default=0)
    progress_total = peewee.BigIntegerField(null=True)
    result = peewee.TextField(null=True)
    error = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    cancel_requested = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField()
    enqueued_at = peewee.DateTimeField(null=True)
    started_at = peewee.DateTimeField(null=True)
    heartbeat_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "jobs"


class InboundEventRow(BaseModel):
    """A verified inbound webhook event, once per (source, sender's event id)."""

    id = peewee.CharField(primary_key=True, max_length=40)
    account_id = peewee.CharField(max_length=40)
    source = peewee.CharField(max_length=40)
    event_id = peewee.CharField(max_length=255)
    type = peewee.CharField(max_length=200, null=True)
    payload = peewee.TextField()
    job_id = peewee.CharField(max_length=40, null=True)
    received_at = peewee.DateTimeField()

    class Meta:
        table_name = "inbound_events"
