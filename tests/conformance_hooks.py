"""schemathesis hooks of the conformance run (tests/conformance.py loads them via SCHEMATHESIS_HOOKS)."""

import os

import schemathesis

# tus PATCH bodies are raw bytes (`application/offset+octet-stream`): send them as octet-stream is.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

FUZZ_KEY_ID = os.environ.get("QUIVER_FUZZ_KEY_ID")


@schemathesis.hook
def before_call(context, case, kwargs):
    """Never revoke the key the fuzzer authenticates with: every later request would be a 401.

    `DELETE /api-keys/{key_id}` is still fuzzed (random ids, and keys the run created through
    the links from `POST /api-keys`); only the fuzzer's own id is swapped for an unknown one.
    """
    params = case.path_parameters
    if FUZZ_KEY_ID and params and params.get("key_id") == FUZZ_KEY_ID:
        params["key_id"] = "key_00000000000000000000000000"
