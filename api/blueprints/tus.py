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
from api.errors import APIError
from api.rate_limit import limited
from api.services import files, tus

blp = Blueprint("tus", __name__, url_prefix="/api/v1/uploads/tus",
                description="Resumable uploads with the tus 1.0 protocol.")

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum,expiration"


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
    @blp.doc(security=[], summary="tus discovery")
    def options(self):
        return Response(status=204, headers={
            "Tus-Version": VERSION, "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(config.current().upload_max_bytes),
            "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUMS)})

    @requires("write")
    @limited("upload")
    @blp.doc(summary="Create an upload (Upload-Length, Upload-Metadata)")
    def post(self):
        row = tus.create(current_account_id(), request.headers.get("Upload-Length"),
                         request.headers.get("Upload-Metadata"))
        headers = _state_headers(row)
        headers["Location"] = f"/api/v1/uploads/tus/{row.id}"
        return Response(status=201, headers=headers)


@blp.route("/<string:upload_id>")
class Upload(MethodView):
    @requires("write")
    @blp.doc(summary="Where an upload stands (Upload-Offset)")
    def head(self, upload_id):
        return Response(status=200, headers=_state_headers(tus.get(current_account_id(), upload_id)))

    @requires("write")
    @blp.doc(summary="Append bytes at Upload-Offset (application/offset+octet-stream)")
    def patch(self, upload_id):
        if request.mimetype != "application/offset+octet-stream":
            raise APIError(415, "UNSUPPORTED_MEDIA_TYPE",
                           "Content-Type must be application/offset+octet-stream.")
        request.max_content_length = config.current().upload_max_bytes
        row = tus.append(current_account_id(), upload_id, request.headers.get("Upload-Offset"),
                         request.stream, request.headers.get("Upload-Checksum"))
        return Response(status=204, headers=_state_headers(row))

    @requires("write")
    @blp.doc(summary="Terminate an upload")
    def delete(self, upload_id):
        tus.terminate(current_account_id(), upload_id)
        return Response(status=204)
