"""Inbound webhooks: one decorator declares a source another service signs its webhooks for.

    @inbound("stripe", verifier=stripe_signature, secret_env="STRIPE_WEBHOOK_SECRET", tolerance=300)
    def handle(event: InboundEvent) -> dict | None:
        ...

The source is served at `POST /api/v1/inbound/stripe` (no API key: the signature
authenticates it), once both its secret (`secret_env`) and the account its events belong
to (`account_env`, by default `secret_env` with `_SECRET` swapped for `_ACCOUNT`:
`STRIPE_WEBHOOK_ACCOUNT=acc_…`) are set in the environment. A verified event is stored
once per sender's event id and answered 202; the handler then runs in an `inbound` job
(retried on failure), and what it returns becomes the job's `result.handled`. Source
modules live in `api/sources/`; `api.sources.load()` imports them all.
"""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from api.inbound_signing import Verifier

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
DEFAULT_TOLERANCE = 300


@dataclass(frozen=True)
class InboundEvent:
    """A verified event as its handler sees it."""

    id: str  # Quiver's id for the stored event (`inb_…`)
    source: str
    event_id: str  # the sender's id (`webhook-id`, or Stripe's `evt_…`)
    type: str | None  # the body's `type`, when it is a string
    account_id: str
    payload: dict
    received_at: datetime


Handler = Callable[[InboundEvent], dict | None]


@dataclass(frozen=True)
class Source:
    """A declared inbound source."""

    name: str
    verifier: Verifier
    secret_env: str
    account_env: str
    tolerance: int
    handler: Handler

    def secret(self) -> str | None:
        """The signing secret, or None while `secret_env` is unset or empty."""
        return os.environ.get(self.secret_env) or None

    def account_id(self) -> str | None:
        """The account events go to, or None while `account_env` is unset or empty."""
        return os.environ.get(self.account_env) or None


SOURCES: dict[str, Source] = {}


def _default_account_env(secret_env: str) -> str:
    if not secret_env.endswith("_SECRET"):
        raise ValueError(f"name account_env: {secret_env!r} does not end with _SECRET")
    return secret_env.removesuffix("_SECRET") + "_ACCOUNT"


def inbound(name: str, *, verifier: Verifier, secret_env: str,
            account_env: str | None = None, tolerance: int = DEFAULT_TOLERANCE):
    """Register the decorated function as the handler of the inbound source `name`."""
    if not NAME.fullmatch(name):
        raise ValueError(f"inbound source names are 1-40 of a-z 0-9 _ - : {name!r}")
    if name in SOURCES:
        raise ValueError(f"inbound source {name!r} is declared twice")

    def register(handler: Handler) -> Handler:
        SOURCES[name] = Source(name, verifier, secret_env,
                               account_env or _default_account_env(secret_env), tolerance, handler)
        return handler

    return register
