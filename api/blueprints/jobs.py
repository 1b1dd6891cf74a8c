"""Job routes: start exports and file imports, follow them (and `inbound` webhook jobs), cancel
them, download results."""

import os

from flask import request, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from api import config, uploads
from api.auth import current_account_id, requires
from api.blueprints.files import content_disposition
from api.docs import ErrorSchema, entity_path_parameter, envelope, links, list_of, request_body
from api.entities import BY_PATH
from api.errors import APIError, NotFound, ValidationFailed, flatten_messages
from api.fields import StrictBoolean
from api.http import json_body, success
from api.query import page_args, page_meta, parse_list_args
from api.rate_limit import limited
from api.services import jobs

blp = Blueprint("jobs", __name__, url_prefix="/api/v1", description="Exports, file imports, jobs.")

IMPORT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
NOT_FILTERS = ("page", "limit", "cursor", "fields", "expand")


class ExportBodySchema(Schema):
    format = fields.String(required=True, validate=validate.OneOf(["csv", "jsonl"]))
    filter = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict,
                         metadata={"description": "List-route query parameters, e.g. "
                                                  '{"status": "todo", "priority[in]": "high,low"}.'})
    escapeFormulas = StrictBoolean(attribute="escape_formulas", load_default=True, metadata={
        "description": "CSV: prefix `'` to text cells that start with `=`, `+`, `-`, `@`, tab or "
                       "carriage return, so spreadsheets show them instead of running them as "
                       "formulas (OWASP CSV injection). `false` exports values exactly, for "
                       "a round trip through CSV import."})


class JobSchema(Schema):
    id = fields.String()
    type = fields.String()
    entity = fields.String()
    status = fields.String()
    progress = fields.Dict()
    result = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    attempts = fields.Integer()
    createdAt = fields.String()
    startedAt = fields.String(allow_none=True)
    finishedAt = fields.String(allow_none=True)


JOB_LINKS = [links(202, "/api/v1/jobs/{job_id}", ("get",), job_id="$response.body#/data/id"),
             links(202, "/api/v1/jobs/{job_id}/cancel", ("post",), job_id="$response.body#/data/id"),
             links(202, "/api/v1/jobs/{job_id}/result", ("get",), job_id="$response.body#/data/id")]


def _job_links(view):
    for doc in JOB_LINKS:
        view = blp.doc(**doc)(view)
    return view


def _entity(entity_path: str):
    entity = BY_PATH.get(entity_path)
    if entity is None:
        raise NotFound(f"No entity {entity_path[:64]!r}.")
    return entity


def _accepted(row):
    return success({"id": row.id, "type": row.type, "status": row.status}, 202,
                   headers={"Location": f"/api/v1/jobs/{row.id}"})


@blp.route("/export/<string:entity_path>", methods=["POST"])
@requires("write")
@limited("export")
@blp.doc(summary="Export an entity's rows (CSV or JSONL) in the background",
         parameters=[entity_path_parameter()], **request_body(ExportBodySchema))
@blp.response(202, envelope(JobSchema, "ExportAccepted"))
@_job_links
@blp.alt_response(400, schema=ErrorSchema)
def start_export(entity_path):
    entity = _entity(entity_path)
    try:
        body = ExportBodySchema().load(json_body())
    except ValidationError as exc:
        raise ValidationFailed(flatten_messages(exc.messages)) from exc
    bad = [k for k in body["filter"] if k in NOT_FILTERS]
    if bad:
        raise ValidationFailed({f"filter.{k}": ["Not a filter."] for k in bad})
    try:
        parse_list_args(entity, MultiDict(body["filter"]))
    except ValidationFailed as exc:
        raise ValidationFailed({f"filter.{k}": v for k, v in (exc.details or {}).items()},
                               "Invalid filter.") from exc
    row = jobs.create(current_account_id(), "export", entity.name,
                      {"format": body["format"], "filter": body["filter"],
                       "escape_formulas": body["escape_formulas"]})
    return _accepted(row)


@blp.route("/import/<string:entity_path>/file", methods=["POST"])
@requires("write")
@limited("upload")
@blp.doc(summary="Import a CSV or JSONL file in the background",
         parameters=[entity_path_parameter()], requestBody={
    "required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "format"],  # `format` may be left to a .csv/.jsonl name
        "properties": {"file": {"type": "string", "format": "binary", "minLength": 1},
                       "format": {"type": "string", "enum": ["csv", "jsonl"]}}}}}})
@blp.response(202, envelope(JobSchema, "ImportAccepted"))
@_job_links
@blp.alt_response(400, schema=ErrorSchema)
@blp.alt_response(413, schema=ErrorSchema)
def start_import(entity_path):
    entity = _entity(entity_path)
    settings = config.current()
    if request.mimetype != "multipart/form-data":
        raise ValidationFailed({"file": ["No file provided (send multipart/form-data)."]})
    request.max_content_length = settings.import_max_bytes + (1 << 20)
    directory = settings.upload_dir / "imports"
    directory.mkdir(parents=True, exist_ok=True)
    uploads.stream_files_into(directory, settings.import_max_bytes)
    part = request.files.get("file")
    if part is None or part.stream.size == 0:
        raise ValidationFailed({"file": ["No file provided."]})
    fmt = request.form.get("format") or IMPORT_FORMATS.get(os.path.splitext(part.filename or "")[1].lower())
    if fmt not in ("csv", "jsonl"):
        raise ValidationFailed({"format": ["Say csv or jsonl (or name the file .csv or .jsonl)."]})
    part.stream.flush()
    row = jobs.create_import(current_account_id(), entity.name, fmt, part.stream.path)
    return _accepted(row)


@blp.route("/jobs")
class Jobs(MethodView):
    @requires("read")
    @blp.doc(parameters=[
        {"in": "query", "name": "status", "schema": {"type": "string", "enum": [
            "queued", "running", "succeeded", "failed", "canceled"]}},
        {"in": "query", "name": "type", "schema": {"type": "string", "enum": list(jobs.TYPES)}},
        {"in": "query", "name": "page", "schema": {"type": "integer", "minimum": 1}},
        {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    ])
    @blp.response(200, list_of(JobSchema, "JobList"))
    @blp.alt_response(400, schema=ErrorSchema)
    def get(self):
        args = request.args
        page, limit, errors = page_args(args, ("status", "type"))
        status, kind = args.get("status"), args.get("type")
        if status is not None and status not in ("queued", "running", *jobs.FINISHED):
            errors["status"] = ["Must be one of: queued, running, succeeded, failed, canceled."]
        if kind is not None and kind not in jobs.TYPES:
            errors["type"] = [f"Must be one of: {', '.join(jobs.TYPES)}."]
        if errors:
            raise ValidationFailed(dict(errors), "Invalid query parameters.")
        rows, total, has_next = jobs.list_page(current_account_id(), page, limit, status, kind)
        return success([jobs.as_json(r) for r in rows], meta=page_meta(page, limit, total, has_next))


@blp.route("/jobs/<string:job_id>", methods=["GET"])
@requires("read")
@blp.response(200, envelope(JobSchema, "Job"))
@blp.alt_response(404, schema=ErrorSchema)
def get_job(job_id):
    return success(jobs.as_json(jobs.get(current_account_id(), job_id)))


@blp.route("/jobs/<string:job_id>/cancel", methods=["POST"])
@requires("write")
@blp.response(202, envelope(JobSchema, "CanceledJob"))
@blp.alt_response(404, schema=ErrorSchema)
@blp.alt_response(409, schema=ErrorSchema)
def cancel_job(job_id):
    return success(jobs.as_json(jobs.cancel(current_account_id(), job_id)), 202)


@blp.route("/jobs/<string:job_id>/result", methods=["GET"])
@requires("read")
@blp.doc(summary="Download an export's file (Range requests supported)", parameters=[
    {"in": "header", "name": "Range", "required": False, "schema": {"type": "string"},
     "description": "One byte range, e.g. `bytes=0-1023` (206)."},
], responses={
    "200": {"description": "The export: CSV or JSON lines.", "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}}}},
    "206": {"description": "The requested range of the file.", "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}}}},
    "304": {"description": "Not modified (`If-None-Match` matched)."},
})
@blp.alt_response(404, schema=ErrorSchema)
@blp.alt_response(410, schema=ErrorSchema, description="The export's file has expired (`JOB_RESULT_TTL`).")
@blp.alt_response(416, schema=ErrorSchema)
def job_result(job_id):
    row = jobs.get(current_account_id(), job_id)
    if row.type != "export" or row.status != "succeeded":
        raise NotFound("This job has no file to download.")
    fmt = jobs.as_json(row)["result"]["format"]
    path = jobs.export_path(row.id, fmt)
    if not path.exists():
        raise APIError(410, "NOT_FOUND", "This export has expired (JOB_RESULT_TTL).")
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=0)
    response.headers["Content-Disposition"] = content_disposition(f"{row.entity}-{row.id}.{fmt}")
    response.headers["Accept-Ranges"] = "bytes"
    return response
