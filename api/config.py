"""Configuration, read only from environment variables (and an optional `.env`).

Every setting has a safe default so that a fresh checkout runs with no
configuration at all: SQLite under `./var`, an embedded Redis started on demand.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    """The service's settings; build one with `Settings.from_env()`."""

    var_dir: Path
    database_url: str
    redis_url: str | None
    db_pool_size: int
    cors_origins: list[str]
    max_content_length: int
    log_level: str
    key_last_used_interval: int

    @classmethod
    def from_env(cls, overrides: dict | None = None) -> "Settings":
        """Read settings from the environment; `overrides` wins (used by tests)."""
        load_dotenv(override=False)
        env = {**os.environ, **(overrides or {})}
        var_dir = Path(env.get("VAR_DIR", "var")).resolve()
        return cls(
            var_dir=var_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'quiver.db'}",
            redis_url=env.get("REDIS_URL") or None,
            db_pool_size=int(env.get("DB_POOL_SIZE", "20")),
            cors_origins=_list(env.get("CORS_ORIGINS", "")),
            max_content_length=int(env.get("MAX_CONTENT_LENGTH", str(32 * 1024 * 1024))),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            key_last_used_interval=int(env.get("KEY_LAST_USED_INTERVAL", "60")),
        )

