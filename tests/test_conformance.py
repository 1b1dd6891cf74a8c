"""Conformance: the running service keeps the promises of its own OpenAPI document.

schemathesis runs over every operation of `/api/v1/openapi.json` against a real gunicorn
(`tests/conformance.py`: a database of the session's kind of its own, a private Redis, an
admin key) with the checks `not_a_server_error`, `status_code_conformance`,
`content_type_conformance` and `response_schema_conformance`. This is the bounded run (a
few cases per operation, the examples, fuzzing and stateful phases, a fixed seed so that a
failure reproduces); `make fuzz` is the thorough one (the coverage phase too, many more cases).

No operation is left out. The event streams are read up to their first event (`connected`)
and then closed; tus `HEAD`/`PATCH`/`DELETE` get made-up upload ids (404, 412, 409, …) since
no link can carry an id out of tus's `Location` header: their success paths are in
tests/test_tus.py, and the stream's in tests/test_streams.py.
"""

import os
import re

import requests

from tests import conformance

MAX_EXAMPLES = os.environ.get("CONFORMANCE_MAX_EXAMPLES", "5")
SEED = os.environ.get("CONFORMANCE_SEED", "20250115")


def _figure(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"no {pattern!r} in schemathesis' summary:\n{text[-3000:]}"
    return int(match.group(1))


def test_every_operation_conforms_to_the_openapi_document(tmp_path):
    with conformance.serve(tmp_path) as server:
        result = conformance.run(
            server, "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--workers", "2",
            "--phases", "examples,fuzzing,stateful",
            capture_output=True, text=True, timeout=600)
        log = server.log
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output[-20000:]}\n--- server log ---\n{log[-5000:]}"
    selected = _figure(r"Operations:\s+(\d+) selected", output)
    total = _figure(r"selected / (\d+) total", output)
    tested = _figure(r"Tested:\s+(\d+)", output)
    cases = _figure(r"(\d+) generated", output)
    assert selected == total == tested >= 70, output[-3000:]
    assert cases >= 2 * tested, output[-3000:]
    assert "Errored" not in output and "failed" not in output.split("SUMMARY")[-1], output[-3000:]


def test_gunicorns_own_refusals_use_the_error_envelope(live_server):
    """A request line or header over gunicorn's limits never reaches the app: still JSON."""
    long_line = requests.get(f"{live_server}/api/v1/tasks?q={'a' * 5000}", timeout=10)
    big_header = requests.get(f"{live_server}/api/v1/tasks", headers={"X-Big": "a" * 9000},
                              timeout=10)
    for response, status, code in ((long_line, 414, "URI_TOO_LONG"),
                                   (big_header, 431, "HEADERS_TOO_LARGE")):
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["X-Request-ID"]
        body = response.json()
        assert body["success"] is False and body["code"] == code and body["error"]
