"""`/healthz` (the process serves) and `/readyz` (the database and Redis answer)."""

from flask import jsonify
from flask_smorest import Blueprint

from api import redis_conn
from api.auth import public
from api.store import db

blp = Blueprint("health", __name__, description="Liveness and readiness.")


@blp.route("/healthz")
@public
@blp.doc(security=[])
def healthz():
    return jsonify({"success": True, "data": {"status": "ok"}})


def _check_database() -> str:
    try:
        db.execute_sql("SELECT 1").fetchone()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"down: {type(exc).__name__}"


def _check_redis() -> str:
    try:
        redis_conn.client().ping()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"down: {type(exc).__name__}"


@blp.route("/readyz")
@public
@blp.doc(security=[])
def readyz():
    checks = {"database": _check_database(), "redis": _check_redis()}
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        body = {"success": False, "error": f"Not ready: {', '.join(down)} down.",
                "code": "SERVICE_UNAVAILABLE", "details": checks}
        return jsonify(body), 503
    return jsonify({"success": True, "data": checks})
