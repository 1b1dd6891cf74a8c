"""Headless Chromium for tests, driven over the DevTools protocol with `websocket-client`.

Fixtures (registered for every test module by `conftest.py`): `chromium`, the path of
Debian's chromium (installed, as root, when missing; the test skips only if that fails),
and `browser`, a `DevTools` connection to a page of a fresh headless chromium.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import websocket

from tests.procs import stop_process, wait_for

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed (as root) when missing."""
    if not Path(CHROMIUM).exists():
        try:
            subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=300)
            subprocess.run(["apt-get", "install", "-y", "chromium"], check=True,
                           capture_output=True, timeout=600,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"chromium is not installed and `apt-get install chromium` failed: {exc}")
    return shutil.which("chromium") or CHROMIUM


class DevTools:
    """A page target of a headless Chromium, over the DevTools protocol."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=10, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        """Send a DevTools command and return its result (events in between are dropped)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (it must not throw)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def browser(chromium, tmp_path):
    """A fresh headless chromium (its own profile), as a `DevTools` on its first page."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devtools = None
    try:
        port_file = profile / "DevToolsActivePort"

        def debugging_port():
            assert process.poll() is None, "chromium exited"
            lines = port_file.read_text().split() if port_file.exists() else []
            return int(lines[0]) if lines else None

        port = wait_for(debugging_port, timeout=30, message="chromium's DevTools port")

        def page_target():
            try:
                targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            except requests.RequestException:
                return None
            return next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)

        devtools = DevTools(wait_for(page_target, timeout=15, message="a chromium page"))
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        stop_process(process)
