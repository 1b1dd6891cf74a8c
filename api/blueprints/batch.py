"""`POST /api/v1/batch`: several API calls in one request (write scope; sub-requests need their own)."""

from functools import cache

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import batch, config
from api.auth import requires
from api.body_limits import large_body
from api.docs import ErrorSchema, request_body
from api.fields import Text
from api.http import json_body
from api.rate_limit import limited

EXAMPLE = {"atomic": False, "requests": [
    {"id": "req1", "method": "POST", "path": "/tasks", "body": {"title": "New"}},
    {"id": "req2", "method": "PATCH", "path": "/tasks/{{req1.body.data.id}}",
     "body": {"status": "completed"}, "dependsOn": ["req1"]},
    {"id": "req3", "method": "GET", "path": "/tasks?status=completed&limit=5"}]}


class SubResponseSchema(Schema):
    id = fields.String()
    status = fields.Integer()
    headers = fields.Dict()
    body = fields.Raw()


class BatchResponseSchema(Schema):
    success = fields.Boolean()
    responses = fields.List(fields.Nested(SubResponseSchema))


# The headers a sub-request may carry, as properties (an open map could not name them).
SubRequestHeadersSchema = type("SubRequestHeadersSchema", (Schema,), {
    name: Text(validate=validate.Length(max=1000)) for name in batch.FORWARDED_HEADERS})


@cache
def _doc_body(max_requests: int) -> type[Schema]:
    """The documented body: `batch.BatchSchema`, with the size `batch.parse` checks (1 to
    `max_requests`) and the forwarded header names."""
    sub_request = type("SubRequestSchema", (batch.SubRequestSchema,), {
        "headers": fields.Nested(SubRequestHeadersSchema)})
    return type("BatchSchema", (batch.BatchSchema,), {
        "requests": fields.List(fields.Nested(sub_request), required=True,
                                validate=validate.Length(1, max_requests))})


def make_blueprint() -> Blueprint:
    """The batch route, documented with this process's `BATCH_MAX_REQUESTS`."""
    blp = Blueprint("batch", __name__, url_prefix="/api/v1/batch",
                    description="Batch requests, optionally atomic.")

    @blp.route("")
    class Batch(MethodView):
        @requires("write")
        @limited("batch")
        @large_body
        @blp.doc(**request_body(_doc_body(config.current().batch_max_requests), EXAMPLE))
        @blp.response(200, BatchResponseSchema)
        @blp.alt_response(400, schema=ErrorSchema)
        def post(self):
            atomic, subs = batch.parse(json_body(), config.current().batch_max_requests)
            return current_app.response_class(batch.to_json(batch.run(atomic, subs)),
                                              mimetype="application/json")

    return blp
