"""File routes: `POST /api/v1/upload` and `/api/v1/files[/{id}[/content]]`."""

from urllib.parse import quote

from flask import redirect, request, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import config, uploads
from api.auth import current_account_id, requires
from api.docs import ErrorSchema, envelope, links, list_of
from api.errors import ValidationFailed
from api.http import no_content, success
from api.query import page_args, page_meta
from api.rate_limit import limited
from api.services import files
from api.storage import get_storage

blp = Blueprint("files", __name__, url_prefix="/api/v1", description="File uploads and downloads.")


class FileSchema(Schema):
    id = fields.String()
    url = fields.String()
    filename = fields.String()
    size = fields.Integer()
    type = fields.String()
    sha256 = fields.String()
    taskId = fields.String(allow_none=True)
    createdAt = fields.String()


class UploadedSchema(Schema):
    success = fields.Boolean(required=True, metadata={"enum": [True]})
    data = fields.Raw(required=True, metadata={
        "description": "One file (field `file`), or `{files: [...]}` (field `files`).",
        "anyOf": [{"$ref": "#/components/schemas/File"}, {
            "type": "object", "required": ["files"], "additionalProperties": False,
            "properties": {"files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}}}}]})


DOWNLOAD_DOC = {
    "parameters": [
        {"in": "header", "name": "Range", "required": False, "schema": {"type": "string"},
         "description": "One byte range, e.g. `bytes=0-1023` (206)."},
        {"in": "header", "name": "If-None-Match", "required": False, "schema": {"type": "string"},
         "description": "304 when it matches the ETag (the content's SHA-256)."},
    ],
    "responses": {
        "200": {"description": "The bytes, typed as sniffed at upload.",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "206": {"description": "The requested range of the bytes.",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "302": {"description": "With S3 storage: a presigned URL of the bytes (`Location`)."},
        "304": {"description": "Not modified (`If-None-Match` matched)."},
    },
}


_BYTES = {"type": "string", "format": "binary", "minLength": 1,
          "description": "JPEG, PNG or PDF bytes by default (UPLOAD_ALLOWED_TYPES, sniffed; else 415)."}
# One file in `file` or several in `files` (else 400 "No file provided"), none of them empty.
UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {
        "file": _BYTES,
        "files": {"type": "array", "minItems": 1, "items": _BYTES},
        "taskId": {"type": "string", "description": "The id of a task to attach the files to."},
    },
    "anyOf": [{"required": ["file"]}, {"required": ["files"]}]}}}}}


@blp.route("/upload", methods=["POST"])
@requires("write")
@limited("upload")
@blp.doc(summary="Upload one file (`file`) or several (`files`)", **UPLOAD_DOC)
@blp.response(201, UploadedSchema)
@blp.doc(**links(201, "/api/v1/files/{file_id}", ("get", "delete"), file_id="$response.body#/data/id"))
@blp.doc(**links(201, "/api/v1/files/{file_id}/content", ("get",), file_id="$response.body#/data/id"))
@blp.alt_response(400, schema=ErrorSchema)
@blp.alt_response(413, schema=ErrorSchema)
@blp.alt_response(415, schema=ErrorSchema)
def upload():
    settings = config.current()
    if request.mimetype != "multipart/form-data":
        raise ValidationFailed({"file": ["No file provided (send multipart/form-data)."]})
    request.max_content_length = settings.upload_max_bytes * settings.upload_max_files + (1 << 20)
    storage = get_storage(settings)
    uploads.stream_files_into(storage.tmp, settings.upload_max_bytes)
    single = [f for f in request.files.getlist("file") if f.filename or f.stream.size]
    many = [f for f in request.files.getlist("files") if f.filename or f.stream.size]
    parts = single + many
    if not parts or any(part.stream.size == 0 for part in parts):
        raise ValidationFailed({"file": ["No file provided."]})
    if len(parts) > settings.upload_max_files:
        raise ValidationFailed({"files": [f"At most {settings.upload_max_files} files."]})
    task_id = request.form.get("taskId") or None
    files.check_task(current_account_id(), task_id)
    kinds = [files.check_type(part.stream.sniffed_type()) for part in parts]
    stored = []
    for part, kind in zip(parts, kinds):
        spool = part.stream
        spool.flush()
        stored.append(files.store(current_account_id(), spool.path, spool.sha256, spool.size, kind,
                                  uploads.sanitize_filename(part.filename), task_id))
    data = [files.as_json(row) for row in stored]
    if many or len(data) > 1:
        return success({"files": data}, 201)
    return success(data[0], 201, headers={"Location": f"/api/v1/files/{stored[0].id}"})


@blp.route("/files")
class Files(MethodView):
    @requires("read")
    @blp.doc(parameters=[
        {"in": "query", "name": "taskId", "schema": {"type": "string"}},
        {"in": "query", "name": "page", "schema": {"type": "integer", "minimum": 1}},
        {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    ])
    @blp.response(200, list_of(FileSchema, "FileList"))
    @blp.alt_response(400, schema=ErrorSchema)
    def get(self):
        page, limit, task_id = _list_args()
        rows, total, has_next = files.list_page(current_account_id(), page, limit, task_id)
        return success([files.as_json(r) for r in rows], meta=page_meta(page, limit, total, has_next))


def _list_args() -> tuple[int, int, str | None]:
    page, limit, errors = page_args(request.args, ("taskId",))
    task_id = request.args.get("taskId")
    if task_id is not None and (len(task_id) > 64 or "\x00" in task_id):
        errors["taskId"] = ["Not a task id."]
    if errors:
        raise ValidationFailed(dict(errors), "Invalid query parameters.")
    return page, limit, task_id


@blp.route("/files/<string:file_id>")
class FileItem(MethodView):
    @requires("read")
    @blp.response(200, envelope(FileSchema, "File"))
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, file_id):
        return success(files.as_json(files.get(current_account_id(), file_id)))

    @requires("write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, file_id):
        files.delete(current_account_id(), file_id)
        return no_content()


@blp.route("/files/<string:file_id>/content", methods=["GET"])
@requires("read")
@blp.doc(summary="Download a file's bytes (Range requests supported)", **DOWNLOAD_DOC)
@blp.alt_response(404, schema=ErrorSchema)
@blp.alt_response(416, schema=ErrorSchema)
def file_content(file_id):
    row = files.get(current_account_id(), file_id)
    storage = get_storage(config.current())
    url = storage.download_url(row.sha256, row.filename, row.content_type)
    if url is not None:
        return redirect(url, 302)
    response = send_file(storage.path(row.sha256), mimetype=row.content_type, etag=row.sha256,
                         conditional=True, max_age=0)
    response.headers["Content-Disposition"] = content_disposition(row.filename)
    response.headers["Accept-Ranges"] = "bytes"
    return response


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name as RFC 5987 `filename*`."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
