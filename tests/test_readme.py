"""The README's curl examples run as pasted, against a real gunicorn.

Every ```sh block of README.md that calls curl is run by bash, one command at a time,
with `Q` and `K` set as its tour says and each placeholder (`tsk_…`, `wh_…`, `sk_…`,
…) replaced by a real id of a fresh account; the files the examples upload are made in
the working directory first. Each curl must exit 0 (streams, given two seconds, may
end by timeout) and get an HTTP answer below 500; a 4xx is allowed only where the
README's own comment on that line names it, or where the example cannot succeed
without the outside world (a webhook to example.com). A list URL with `[…]` that curl
would read as a glob, a quote out of place or a missing file fails here, not for the
first person who pastes it.
"""

import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import media
from tests.procs import ROOT, free_port, start_gunicorn, stop_process

README = ROOT / "README.md"
NEEDS_THE_INTERNET = ("example.com",)


def curl_commands() -> list[tuple[int, str]]:
    """(line number, command) for every curl command of the README's shell blocks."""
    commands = []
    text = README.read_text()
    for block in re.finditer(r"```(?:sh|bash)\n(.*?)```", text, re.S):
        first_line = text[:block.start()].count("\n") + 2
        lines = block.group(1).split("\n")
        index = 0
        while index < len(lines):
            start, command = index, lines[index]
            while _continues(command) and index + 1 < len(lines):
                index += 1
                command += "\n" + lines[index]
            index += 1
            if command.lstrip().startswith("curl "):
                commands.append((first_line + start, command))
    return commands


def _continues(command: str) -> bool:
    """True while the command goes on: a trailing backslash or an open single quote."""
    stripped = _without_comment(command)
    return stripped.rstrip().endswith("\\") or stripped.count("'") % 2 == 1


def _without_comment(command: str) -> str:
    try:
        return shlex.join(shlex.split(command, comments=True))
    except ValueError:  # an unclosed quote: the command goes on
        return command


@pytest.fixture(scope="module")
def server(app, backend_env):
    """gunicorn with room for the examples' streams; yields its base URL."""
    port = free_port()
    process = start_gunicorn({**os.environ, **backend_env, "WEB_CONCURRENCY": "1",
                              "WEB_THREADS": "24", "LOG_LEVEL": "WARNING"}, port)
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


@pytest.fixture(scope="module")
def places(server, app, backend_env, tmp_path_factory) -> dict:
    """A fresh account with a record of each kind (a finished export among them), the
    files the examples upload, and the values that stand for the README's placeholders."""
    from tests.conftest import Account

    api = Account(app, app.test_client()).api
    workdir = tmp_path_factory.mktemp("readme")
    (workdir / "photo.png").write_bytes(media.png(media.token()))
    (workdir / "a.pdf").write_bytes(media.pdf(media.token()))
    (workdir / "b.jpg").write_bytes(media.jpeg(media.token()))
    (workdir / "tasks.jsonl").write_text('{"title": "From a file"}\n')
    (workdir / "tasks.csv").write_text("title\nFrom a CSV\n")
    photo = (workdir / "photo.png").read_bytes()
    upload = _data(api.post("/upload", content_type="multipart/form-data",
                            data={"file": (io.BytesIO(photo), "p.png")}))
    hook = _data(api.post("/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["*"]}))
    api.post(f"/webhooks/{hook['id']}/test")
    delivery = _data(api.get(f"/webhooks/{hook['id']}/deliveries"))[0]
    job = _data(api.post("/export/tasks", json={"format": "csv"}))
    subprocess.run([sys.executable, "-m", "jobs.worker", "--burst"], cwd=ROOT, check=True,
                   env={**os.environ, **backend_env, "LOG_LEVEL": "WARNING"}, capture_output=True,
                   timeout=120)
    key = _data(api.post("/api-keys", json={"name": "readme", "scopes": ["read"]}))
    values = {"usr_": api.create("users", name="Ann", email="ann.readme@example.com")["id"],
              "prj_": api.create("projects", name="Readme")["id"], "fil_": upload["id"],
              "wh_": hook["id"], "whd_": delivery["id"], "job_": job["id"], "key_": key["id"],
              "sk_": api.key, "6f1c": "readme-idempotency-key"}
    return {"api": api, "values": values, "workdir": workdir, "base": server}


def _fresh_values(places: dict) -> dict:
    """The placeholders' values for one command: a task of its own, the latest event."""
    api = places["api"]
    task = api.create("tasks", title="Readme task")
    event = _data(api.get("/events", query_string={"limit": 2}))[-1]
    cursor = api.get("/tasks", query_string={"limit": 1}).get_json()["meta"]["nextCursor"]
    return {**places["values"], "tsk_": task["id"], "evt_": event["id"], "eyJz": cursor}


def _data(response):
    assert response.status_code < 300, response.get_json()
    return response.get_json()["data"]


def substitute(command: str, values: dict) -> str:
    """The command with each `<prefix>…` placeholder replaced by a real value."""
    command = re.sub(r"\bsk_…", values["sk_"], command)
    command = re.sub(r'"(tsk_)….1"', lambda m: f'"{values["tsk_"]}.1"', command)
    return re.sub(r"\b(usr_|prj_|tsk_|fil_|whd_|wh_|job_|key_|evt_|eyJz|6f1c)…",
                  lambda m: values[m.group(1)], command)


@pytest.mark.parametrize("line,command", curl_commands(),
                         ids=[f"README.md:{n}" for n, _ in curl_commands()])
def test_readme_curl_example_runs_as_pasted(places, line, command):
    values = _fresh_values(places)
    key = values["sk_"]
    script = (f"export Q={places['base']}/api/v1 K={shlex.quote('Authorization: Bearer ' + key)}\n"
              "curl() { command curl --max-time 2 -w '\\n__STATUS__%{http_code}\\n' \"$@\"; }\n"
              + substitute(command, values) + "\n")
    result = subprocess.run(["bash", "-c", script], cwd=places["workdir"], capture_output=True,
                            text=True, timeout=30)
    streaming = "curl -N" in command
    assert result.returncode == 0 or (streaming and result.returncode == 28), (
        f"README.md:{line}: curl exited {result.returncode}: {result.stderr[-500:]}")
    statuses = re.findall(r"__STATUS__(\d{3})", result.stdout)
    assert statuses and statuses[-1] != "000", f"README.md:{line}: no HTTP answer: {result.stderr}"
    status = int(statuses[-1])
    assert status < 500, f"README.md:{line}: {status} {result.stdout[-500:]}"
    comment = command.split("#", 1)[1] if "#" in command else ""
    if status >= 400 and str(status) not in comment:
        assert any(host in command for host in NEEDS_THE_INTERNET), (
            f"README.md:{line}: {status} {result.stdout[-800:]}")


def test_every_curl_line_of_the_readme_is_collected():
    in_blocks = [line for block in re.findall(r"```(?:sh|bash)\n(.*?)```", README.read_text(), re.S)
                 for line in block.splitlines() if line.lstrip().startswith("curl ")]
    assert len(curl_commands()) == len(in_blocks) >= 40
