"""Configuration, read only from environment variables (and an optional `.env`).

Every setting has a safe default so that a fresh checkout runs with no
configuration at all: SQLite under `./var`, an embedded Redis started on demand.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in `30s`, `2m`, `1h`, `5d` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 2m, 1h, 5d)")
    return int(match.group(1)) * _UNITS.get(match.group(2) or "s")


def _stream_cap(threads: int) -> int:
    """Streams one web process holds by default: its threads less a reserve for ordinary
    requests (16, or a tenth of the threads when that is more)."""
    return max(1, threads - max(16, threads // 10))


@dataclass(frozen=True)
class Settings:
    """The service's settings; build one with `Settings.from_env()`."""

    var_dir: Path
    database_url: str
    redis_url: str | None
    db_pool_size: int
    db_prepare: bool
    record_cache_size: int
    record_cache_seconds: float
    cors_origins: list[str]
    max_content_length: int
    json_max_bytes: int
    log_level: str
    key_last_used_interval: int
    bulk_max_items: int
    webhook_timeout: float
    webhook_retry_schedule: list[int]
    webhook_disable_after: int
    webhook_allow_private: bool
    sse_heartbeat_seconds: float
    sse_replay_limit: int
    ratelimit_enabled: bool
    ratelimit_default: str
    ratelimit_groups: dict
    batch_max_requests: int
    upload_max_bytes: int
    upload_max_files: int
    upload_allowed_types: list[str]
    storage_backend: str
    upload_dir: Path
    s3: dict
    tus_expire_seconds: int
    import_max_bytes: int
    job_timeout: int
    job_result_ttl: int
    job_stale_after: int
    job_max_attempts: int
    sse_max_streams: int
    graphql_max_depth: int
    graphql_max_cost: int
    graphql_max_query_bytes: int
    graphql_introspection: bool
    metrics_enabled: bool
    metrics_token: str | None
    metrics_dir: Path

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
            db_prepare=_bool(env.get("DB_PREPARE", "true")),
            record_cache_size=int(env.get("RECORD_CACHE_SIZE", "10000")),
            record_cache_seconds=float(env.get("RECORD_CACHE_SECONDS", "30")),
            cors_origins=_list(env.get("CORS_ORIGINS", "")),
            max_content_length=int(env.get("MAX_CONTENT_LENGTH", str(32 * 1024 * 1024))),
            json_max_bytes=int(env.get("JSON_MAX_BYTES", str(1024 * 1024))),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            key_last_used_interval=int(env.get("KEY_LAST_USED_INTERVAL", "60")),
            bulk_max_items=int(env.get("BULK_MAX_ITEMS", "1000")),
            webhook_timeout=float(env.get("WEBHOOK_TIMEOUT", "10")),
            webhook_retry_schedule=[parse_duration(d) for d in _list(
                env.get("WEBHOOK_RETRY_SCHEDULE", "5s,30s,2m,10m,30m,1h,3h,6h"))],
            webhook_disable_after=parse_duration(env.get("WEBHOOK_DISABLE_AFTER", "5d")),
            webhook_allow_private=_bool(env.get("WEBHOOK_ALLOW_PRIVATE", "false")),
            sse_heartbeat_seconds=float(env.get("SSE_HEARTBEAT_SECONDS", "15")),
            sse_replay_limit=int(env.get("SSE_REPLAY_LIMIT", "10000")),
            ratelimit_enabled=_bool(env.get("RATELIMIT_ENABLED", "true")),
            ratelimit_default=env.get("RATELIMIT_DEFAULT", "1000 per hour;100 per minute"),
            ratelimit_groups={
                "batch": env.get("RATELIMIT_BATCH", "30 per minute"),
                "bulk": env.get("RATELIMIT_BULK", "60 per minute"),
                "upload": env.get("RATELIMIT_UPLOAD", "30 per minute"),
                "export": env.get("RATELIMIT_EXPORT", "10 per minute"),
            },
            batch_max_requests=int(env.get("BATCH_MAX_REQUESTS", "20")),
            upload_max_bytes=int(env.get("UPLOAD_MAX_BYTES", str(10 * 1024 * 1024))),
            upload_max_files=int(env.get("UPLOAD_MAX_FILES", "20")),
            upload_allowed_types=_list(env.get("UPLOAD_ALLOWED_TYPES",
                                               "image/jpeg,image/png,application/pdf")),
            storage_backend=env.get("STORAGE_BACKEND", "local"),
            upload_dir=Path(env.get("UPLOAD_DIR") or var_dir / "uploads").resolve(),
            s3={"bucket": env.get("S3_BUCKET"), "endpoint_url": env.get("S3_ENDPOINT_URL"),
                "region_name": env.get("S3_REGION"), "prefix": env.get("S3_PREFIX", "blobs/")},
            tus_expire_seconds=parse_duration(env.get("TUS_EXPIRE", "24h")),
            import_max_bytes=int(env.get("IMPORT_MAX_BYTES", str(512 * 1024 * 1024))),
            job_timeout=parse_duration(env.get("JOB_TIMEOUT", "1h")),
            job_result_ttl=parse_duration(env.get("JOB_RESULT_TTL", "24h")),
            job_stale_after=parse_duration(env.get("JOB_STALE_AFTER", "2m")),
            job_max_attempts=int(env.get("JOB_MAX_ATTEMPTS", "3")),
            sse_max_streams=int(env.get("SSE_MAX_STREAMS", "0")) or _stream_cap(
                int(env.get("WEB_THREADS", "640"))),
            graphql_max_depth=int(env.get("GRAPHQL_MAX_DEPTH", "8")),
            graphql_max_cost=int(env.get("GRAPHQL_MAX_COST", "10000")),
            graphql_max_query_bytes=int(env.get("GRAPHQL_MAX_QUERY_BYTES", "32768")),
            graphql_introspection=_bool(env.get("GRAPHQL_INTROSPECTION", "true")),
            metrics_enabled=_bool(env.get("METRICS_ENABLED", "true")),
            metrics_token=env.get("METRICS_TOKEN") or None,
            metrics_dir=Path(env.get("PROMETHEUS_MULTIPROC_DIR") or var_dir / "metrics").resolve(),
        )


_active: Settings | None = None


def activate(settings: Settings) -> None:
    """Make `settings` the ones `current()` returns (the app factory and the worker call this)."""
    global _active
    _active = settings


def current() -> Settings:
    """The settings of this process."""
    return _active if _active is not None else Settings.from_env()

