"""`POST /api/v1/batch`: several API calls in one request (write scope; sub-requests need their own)."""

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import batch, config
from api.auth import requires
from api.body_limits import large_body
from api.docs import ErrorSchema
from api.http import json_body
from api.rate_limit import limited

blp = Blueprint("batch", __name__, url_prefix="/api/v1/batch",
                description="Batch requests, optionally atomic.")


class SubResponseSchema(Schema):
    id = fields.String()
    status = fields.Integer()
    headers = fields.Dict()
    body = fields.Raw()


class BatchResponseSchema(Schema):
    success = fields.Boolean()
    responses = fields.List(fields.Nested(SubResponseSchema))


@blp.route("")
class Batch(MethodView):
    @requires("write")
    @limited("batch")
    @large_body
    @blp.doc(requestBody={"required": True, "content": {"application/json": {
        "schema": batch.BatchSchema, "example": {"atomic": False, "requests": [
            {"id": "req1", "method": "POST", "path": "/tasks", "body": {"title": "New"}},
            {"id": "req2", "method": "PATCH", "path": "/tasks/{{req1.body.data.id}}",
             "body": {"status": "completed"}, "dependsOn": ["req1"]},
            {"id": "req3", "method": "GET", "path": "/tasks?status=completed&limit=5"}]}}}})
    @blp.response(200, BatchResponseSchema)
    @blp.alt_response(400, schema=ErrorSchema)
    def post(self):
        atomic, subs = batch.parse(json_body(), config.current().batch_max_requests)
        return current_app.response_class(batch.to_json(batch.run(atomic, subs)),
                                          mimetype="application/json")
