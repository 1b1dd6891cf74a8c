"""`/api/v1/uploads/tus`: resumable uploads (tus 1.0: core, creation, termination, checksum, expiration).

Every response carries `Tus-Resumable: 1.0.0`. When an upload completes, the
final PATCH (and any later HEAD) also carries `Quiver-File-Id` and a
`Quiver-File-Url` naming the file record it became.
"""

from datetime import UTC
from email.utils import format_datetime

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api import config
from api.auth import current_account_id, public, requires
from api.docs import ErrorSchema
from api.errors import APIError
from api.rate_limit import limited
from api.services import files, tus

blp = Blueprint("tus", __name__, url_prefix="/api/v1/uploads/tus",
                description="Resumable uploads with the tus 1.0 protocol.")

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum,expiration"


def _header(name: str, description: str, schema: dict | None = None, required: bool = False) -> dict:
    return {"in": "header", "name": name, "required": required, "description": description,
            "schema": schema or {"type": "string"}}


TUS_RESUMABLE = _header("Tus-Resumable", "The protocol version (else 412).",
                        {"type": "string", "enum": [VERSION]}, required=True)
UPLOAD_LENGTH = _header("Upload-Length", "The upload's size in bytes, at most UPLOAD_MAX_BYTES "
                        "(default 10 MiB; 413 above).",
                        {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}, required=True)
UPLOAD_METADATA = _header("Upload-Metadata", "Comma-separated `key base64(value)` pairs "
                          "(`filename`, `taskId`).")
UPLOAD_OFFSET = _header("Upload-Offset", "Where these bytes go: the current offset (else 409).",
                        {"type": "string", "pattern": "^[0-9]{1,18}$"}, required=True)
UPLOAD_CHECKSUM = _header("Upload-Checksum", "`sha1 <base64>` or `sha256 <base64>` of these bytes "
                          "(460 when they do not match).", {"type": "string", "pattern": (
                              "^(sha1|sha256) ([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|"
                              "[A-Za-z0-9+/]{3}=)?$")})
STATE_HEADERS = {name: {"schema": {"type": "string"}} for name in
                 ("Upload-Offset", "Upload-Length", "Upload-Expires", "Tus-Resumable")}


@blp.after_request
def _tus_resumable(response):
    response.headers["Tus-Resumable"] = VERSION
    return response


@blp.before_request
def _check_version():
    if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != VERSION:
        raise APIError(412, "PRECONDITION_FAILED", f"Send Tus-Resumable: {VERSION}.",
                       headers={"Tus-Version": VERSION})


def _state_headers(row) -> dict:
    headers = {"Upload-Offset": str(row.offset), "Upload-Length": str(row.length),
               "Upload-Expires": format_datetime(row.expires_at.replace(tzinfo=UTC), usegmt=True),
               "Cache-Control": "no-store"}
    if row.file_id:
        headers["Quiver-File-Id"] = row.file_id
        headers["Quiver-File-Url"] = files.CONTENT_URL.format(id=row.file_id)
    return headers


@blp.route("")
class Uploads(MethodView):
    @public
    @blp.doc(security=[], summary="tus discovery", responses={"204": {
        "description": "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm headers."}})
    def options(self):
        return Response(status=204, headers={
            "Tus-Version": VERSION, "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(config.current().upload_max_bytes),
            "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUMS)})

    @requires("write")
    @limited("upload")
    @blp.doc(summary="Create an upload (Upload-Length, Upload-Metadata)",
             parameters=[TUS_RESUMABLE, UPLOAD_LENGTH, UPLOAD_METADATA],
             responses={"201": {"description": "Created; `Location` names the upload.",
                                "headers": STATE_HEADERS}})
    @blp.alt_response(400, schema=ErrorSchema)
    @blp.alt_response(412, schema=ErrorSchema)
    @blp.alt_response(413, schema=ErrorSchema)
    def post(self):
        row = tus.create(current_account_id(), request.headers.get("Upload-Length"),
                         request.headers.get("Upload-Metadata"))
        headers = _state_headers(row)
        headers["Location"] = f"/api/v1/uploads/tus/{row.id}"
        return Response(status=201, headers=headers)


@blp.route("/<string:upload_id>")
class Upload(MethodView):
    @requires("write")
    @blp.doc(summary="Where an upload stands (Upload-Offset)", parameters=[TUS_RESUMABLE],
             responses={"200": {"description": "No body; the state is in the headers.",
                                "headers": STATE_HEADERS},
                        "404": {"description": "No such upload."},
                        "410": {"description": "The upload has expired."},
                        "412": {"description": "Wrong or missing Tus-Resumable."}})
    def head(self, upload_id):
        return Response(status=200, headers=_state_headers(tus.get(current_account_id(), upload_id)))

    @requires("write")
    @blp.doc(summary="Append bytes at Upload-Offset (application/offset+octet-stream)",
             parameters=[TUS_RESUMABLE, UPLOAD_OFFSET, UPLOAD_CHECKSUM],
             requestBody={"required": True, "content": {"application/offset+octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}},
             responses={"204": {"description": "Appended; the new `Upload-Offset` (and, once "
                                               "complete, `Quiver-File-Id`) in the headers.",
                                "headers": STATE_HEADERS},
                        "460": {"description": "`CHECKSUM_MISMATCH`: Upload-Checksum does not match.",
                                "content": {"application/json": {"schema": ErrorSchema}}}})
    @blp.alt_response(409, schema=ErrorSchema)
    @blp.alt_response(410, schema=ErrorSchema)
    @blp.alt_response(412, schema=ErrorSchema)
    @blp.alt_response(415, schema=ErrorSchema)
    def patch(self, upload_id):
        if request.mimetype != "application/offset+octet-stream":
            raise APIError(415, "UNSUPPORTED_MEDIA_TYPE",
                           "Content-Type must be application/offset+octet-stream.")
        request.max_content_length = config.current().upload_max_bytes
        row = tus.append(current_account_id(), upload_id, request.headers.get("Upload-Offset"),
                         request.stream, request.headers.get("Upload-Checksum"))
        return Response(status=204, headers=_state_headers(row))

    @requires("write")
    @blp.doc(summary="Terminate an upload", parameters=[TUS_RESUMABLE],
             responses={"204": {"description": "Terminated."}})
    @blp.alt_response(412, schema=ErrorSchema)
    def delete(self, upload_id):
        tus.terminate(current_account_id(), upload_id)
        return Response(status=204)
