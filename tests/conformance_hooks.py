"""schemathesis hooks of the conformance run (tests/conformance.py loads them via SCHEMATHESIS_HOOKS)."""

import os
import re
import uuid

import schemathesis

# tus PATCH bodies are raw bytes (`application/offset+octet-stream`): send them as octet-stream is.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

FUZZ_KEY_ID = os.environ.get("QUIVER_FUZZ_KEY_ID")
IDEMPOTENCY_KEY = "Idempotency-Key"
VALID_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def before_call(context, case, kwargs):
    """Never revoke the fuzzer's own key, and never reuse an `Idempotency-Key` for another request.

    A revoked key would make every later request a 401. `DELETE /api-keys/{key_id}` is still
    fuzzed (random ids, and keys the run created through the links from `POST /api-keys`);
    only the fuzzer's own id is swapped for an unknown one.
    """
    params = case.path_parameters
    if FUZZ_KEY_ID and params and params.get("key_id") == FUZZ_KEY_ID:
        params["key_id"] = "key_00000000000000000000000000"
    _fresh_idempotency_key(case.headers)


def _fresh_idempotency_key(headers) -> None:
    """A valid `Idempotency-Key` gets a unique suffix, as a client makes a fresh key per request.

    The generator draws the same few short keys ("0", "!") for unrelated requests, and a key
    reused for another request is the documented 422 `IDEMPOTENCY_KEY_REUSED`: a conflict with
    an earlier request, not a refusal of the data sent. Invalid keys are left as they are.
    """
    key = (headers or {}).get(IDEMPOTENCY_KEY)
    if isinstance(key, str) and VALID_IDEMPOTENCY_KEY.fullmatch(key):
        headers[IDEMPOTENCY_KEY] = f"{key[:222]}.{uuid.uuid4().hex}"  # still at most 255
