"""Webhook signatures: the Standard Webhooks scheme, plus a hex HMAC of the body.

A delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
base64-decoded part of the `whsec_` secret; several space-separated during a
rotation), and `X-Webhook-Signature` (hex HMAC-SHA256 of the body keyed with the
whole secret string). Receivers in Python can call `verify_webhook`.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """The request is not a valid, fresh delivery signed with the secret."""


def generate_secret() -> str:
    """`whsec_` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64-decoded part after `whsec_` (raw bytes if not base64)."""
    material = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        # Unpadded base64 is common in `whsec_` secrets; the reference verifiers accept it.
        return base64.b64decode(material + "=" * (-len(material) % 4), validate=True)
    except (binascii.Error, ValueError):
        return material.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    payload = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def hex_signature(secret: str, body: bytes) -> str:
    """The simple scheme: hex HMAC-SHA256 of the body keyed with the secret string."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_headers(secrets_: list[str], msg_id: str, body: bytes, timestamp: int | None = None) -> dict:
    """Headers for a delivery signed with each of `secrets_` (the current one first)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
        "X-Webhook-Signature": hex_signature(secrets_[0], body),
    }


def verify_webhook(body: bytes, headers: dict, secret: str, tolerance: int = TOLERANCE_SECONDS) -> None:
    """Check a received delivery; raise `WebhookVerificationError` unless it is valid and fresh.

    `headers` is any mapping of the request's headers (names compared case-insensitively).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split(" ")
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    if abs(time.time() - timestamp) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body)
    # As bytes: `compare_digest` refuses str holding anything but ASCII (a header may).
    if not any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures):
        raise WebhookVerificationError("no matching signature")
