"""`/healthz` (the process serves) and `/readyz` (the database and Redis answer)."""

from flask import jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import redis_conn
from api.auth import public
from api.docs import ErrorSchema, envelope
from api.services import database

blp = Blueprint("health", __name__, description="Liveness and readiness.")


class LiveSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(Schema):
    database = fields.String(required=True, metadata={"example": "ok"})
    redis = fields.String(required=True, metadata={"example": "ok"})


@blp.route("/healthz")
@public
@blp.doc(security=[])
@blp.response(200, envelope(LiveSchema, "Live"))
def healthz():
    return jsonify({"success": True, "data": {"status": "ok"}})


def _check_database() -> str:
    try:
        database.ping()
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
@blp.response(200, envelope(ReadySchema, "Ready"))
@blp.alt_response(503, schema=ErrorSchema, description="`SERVICE_UNAVAILABLE`: `details` names "
                  "what is down, e.g. `{\"database\": \"ok\", \"redis\": \"down: ConnectionError\"}`.")
def readyz():
    checks = {"database": _check_database(), "redis": _check_redis()}
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        body = {"success": False, "error": f"Not ready: {', '.join(down)} down.",
                "code": "SERVICE_UNAVAILABLE", "details": checks}
        return jsonify(body), 503
    return jsonify({"success": True, "data": checks})
