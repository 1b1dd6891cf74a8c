"""Verifiers for inbound webhooks: Standard Webhooks and Stripe's `Stripe-Signature`.

A verifier checks that a request's raw body was signed with a source's secret, recently,
and names the sender's id for the event (what redeliveries are recognised by):

- `standard_webhooks`: `webhook-id`, `webhook-timestamp` and `webhook-signature:
  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the base64-decoded
  part of a `whsec_…` secret, several space-separated allowed (the scheme Quiver's own
  deliveries use, `api.webhook_signing`); the event id is `webhook-id`.
- `stripe_signature`: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
  "{t}.{body}">` keyed with the secret string (`whsec_…` as Stripe shows it), several `v1`
  allowed, other schemes (`v0`) ignored; the event id is the body's `id`.

Both refuse a timestamp more than `tolerance` seconds from now, in either direction, and
compare signatures in constant time. Another scheme is any object shaped like `Verifier`.
Nothing here knows HTTP: `headers` is any mapping.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Protocol

from api.webhook_signing import WebhookVerificationError, verify_webhook

_DIGITS = re.compile(r"[0-9]{1,12}")


class InvalidSignature(Exception):
    """The request is not signed with the source's secret, or not recently."""


class Verifier(Protocol):
    """What a source's verifier does."""

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, tolerance: int) -> None:
        """Raise `InvalidSignature` unless `body` is signed with `secret` within `tolerance` seconds."""

    def event_id(self, headers: Mapping[str, str], payload: dict) -> str | None:
        """The sender's id for the event (a verified request's), or None when it names none."""


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _check_fresh(timestamp: int, tolerance: int) -> None:
    if abs(time.time() - timestamp) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance")


class StandardWebhooks:
    """The Standard Webhooks scheme (https://www.standardwebhooks.com)."""

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, tolerance: int) -> None:
        """Raise `InvalidSignature` unless `body` is signed with `secret` within `tolerance` seconds."""
        lowered = _lowered(headers)
        if not _DIGITS.fullmatch(lowered.get("webhook-timestamp", "")):
            raise InvalidSignature("missing or malformed webhook-timestamp header")
        try:
            verify_webhook(body, lowered, secret, tolerance)
        except WebhookVerificationError as exc:
            raise InvalidSignature(str(exc)) from exc

    def event_id(self, headers: Mapping[str, str], payload: dict) -> str | None:
        """The sender's id for the event: the `webhook-id` header."""
        return _lowered(headers).get("webhook-id")


class StripeSignature:
    """Stripe's scheme (https://docs.stripe.com/webhooks#verify-manually)."""

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, tolerance: int) -> None:
        """Raise `InvalidSignature` unless `body` is signed with `secret` within `tolerance` seconds."""
        header = _lowered(headers).get("stripe-signature", "")
        timestamps, signatures = [], []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                timestamps.append(value)
            elif key == "v1":
                signatures.append(value)
        if len(timestamps) != 1 or not _DIGITS.fullmatch(timestamps[0]) or not signatures:
            raise InvalidSignature("missing or malformed Stripe-Signature header")
        timestamp = int(timestamps[0])
        _check_fresh(timestamp, tolerance)
        expected = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body,
                            hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
            raise InvalidSignature("no matching signature")

    def event_id(self, headers: Mapping[str, str], payload: dict) -> str | None:
        """The sender's id for the event: the body's `id` (`evt_…`)."""
        found = payload.get("id")
        return found if isinstance(found, str) else None


standard_webhooks = StandardWebhooks()
stripe_signature = StripeSignature()
