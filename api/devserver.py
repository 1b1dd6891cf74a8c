"""`make run`: the whole service on one machine, started and stopped in order.

1. When the port is taken (another `make run`, or anything else) it says so and
   stops, having changed nothing: the running server's key still works.
2. Without `REDIS_URL` it starts the embedded Redis itself, in a session of its
   own, so the terminal's Ctrl-C does not reach it.
3. It prints a fresh admin key of the demo account (`flask dev-key`) and a curl example.
4. It runs the Procfile's web and worker under honcho. On Ctrl-C or SIGTERM they
   stop first (honcho asks them to), then Redis: the worker never sees Redis go.

Run as `python -m api.devserver [--port N]` from the checkout (the Makefile does).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from api import embedded_redis
from api.config import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def port_is_free(port: int) -> bool:
    """True when nothing listens on `port` (gunicorn binds every interface)."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def dev_key(env: dict) -> str:
    """A fresh admin key of the demo account (the previous `make run` key is revoked)."""
    output = subprocess.run([BIN / "flask", "--app", "wsgi", "dev-key"], cwd=ROOT, check=True,
                            capture_output=True, text=True, env=env).stdout
    return next(line[5:] for line in output.splitlines() if line.startswith("key: "))


def banner(port: int, key: str) -> str:
    base = f"http://127.0.0.1:{port}"
    return (f"\n  Quiver is starting on {base}\n"
            f"  Admin key (shown once): {key}\n\n"
            f"  curl -s {base}/api/v1/tasks -H 'Authorization: Bearer {key}'\n"
            f"  curl -s -X POST {base}/api/v1/tasks -H 'Authorization: Bearer {key}' \\\n"
            f"       -H 'Content-Type: application/json' -d '{{\"title\": \"Hello\"}}'\n"
            f"  API docs: {base}/api/v1/docs    Live page: {base}/\n"
            f"  Ctrl-C stops it.\n")


def run(port: int) -> int:
    """Start everything, wait for honcho to end, then stop Redis; honcho's exit status."""
    if not port_is_free(port):
        print(f"Port {port} is already in use: another Quiver (`make run`) or some other "
              f"server is listening there.\nNothing was changed; its key still works. Stop it, "
              f"or start this one elsewhere: make run PORT={port + 1}", file=sys.stderr)
        return 1
    settings = Settings.from_env()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    owns_redis = not settings.redis_url
    if owns_redis:
        env["REDIS_URL"] = embedded_redis.ensure_running(settings.var_dir)
    try:
        print(banner(port, dev_key(env)), flush=True)
        honcho = subprocess.Popen([BIN / "honcho", "start", "--port", str(port), "web", "worker"],
                                  cwd=ROOT, env=env)
        signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
        try:
            return honcho.wait()
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached honcho too: it stops them
            honcho.wait()
            return 0
    finally:
        if owns_redis:
            embedded_redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    sys.exit(run(parser.parse_args().port))


if __name__ == "__main__":
    main()
