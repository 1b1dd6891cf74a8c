"""File uploads and downloads (contract section 6; `file.*` events of section 7; issue 7).

`POST /api/v1/upload` takes one file in `file` or several in `files` (multipart), with an
optional `taskId` that must name a task of the account. The type is sniffed from the
bytes (the client's content type and extension are ignored) and must be one of
`UPLOAD_ALLOWED_TYPES` (415 otherwise); a file over `UPLOAD_MAX_BYTES` is 413 and leaves
no temp file behind; no file or an empty one is 400 "No file provided". Filenames are
sanitised for display only: bytes are stored by SHA-256, so identical uploads share one
blob, which goes from disk with the last record that uses it.

`GET /api/v1/files[/{id}[/content]]` and `DELETE /api/v1/files/{id}` are account-scoped
(another account's file is 404); the content route streams the exact bytes with the
right `Content-Type`, `Content-Disposition: attachment; filename*=UTF-8''…`, `ETag`,
`Accept-Ranges: bytes`, single `Range` → 206, unsatisfiable range → 416, and
`If-None-Match` → 304. Most tests use the Flask test client; the last ones run against a
real gunicorn (uploads over HTTP, and concurrent uploads/deletes of identical content).
"""

import hashlib
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote

import pytest
import requests

from api.models import Blob, File
from api.services import accounts
from api.services import files as file_service
from api.storage import get_storage
from tests import media
from tests.conftest import ApiClient
from tests.extra_apps import extra_apps

FILE_ID = re.compile(r"fil_[0-9A-HJKMNP-TV-Z]{26}")
RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
MISSING_FILE = "fil_00000000000000000000000000"
MiB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------


def upload(api, content: bytes, filename: str = "picture.png",
           mimetype: str = "application/octet-stream", field: str = "file", **form):
    """POST one file as multipart; extra keyword arguments become form fields."""
    data = {field: (io.BytesIO(content), filename, mimetype), **form}
    return api.post("/upload", data=data, content_type="multipart/form-data")


def upload_ok(api, content: bytes, filename: str = "picture.png", **form) -> dict:
    response = upload(api, content, filename, **form)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def storage_of(app):
    return get_storage(app.config["QUIVER"])


def temp_files(app) -> set:
    return set(storage_of(app).tmp.iterdir())


def blob_row(app, sha256: str):
    with app.app_context():
        return Blob.get_or_none(Blob.sha256 == sha256)


def file_rows(app, sha256: str) -> list:
    with app.app_context():
        return list(File.select().where(File.sha256 == sha256))


def blobs_on_disk(app, sha256: str) -> list:
    """Every file under the upload directory named by this SHA-256."""
    return [p for p in app.config["QUIVER"].upload_dir.rglob(sha256) if p.is_file()]


def events_of(api, event_type: str) -> list[dict]:
    response = api.get("/events", query_string={"type": event_type, "limit": 100})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert body["success"] is False and body["code"] == code, body
    return body


# --- uploading -----------------------------------------------------------------------------------


def test_png_upload_returns_the_record_with_location(api, app):
    content = media.png(media.token())
    response = upload(api, content, "holiday.png", "image/png")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"id", "url", "filename", "size", "type", "sha256", "taskId", "createdAt"}
    assert FILE_ID.fullmatch(data["id"])
    assert data["url"] == f"/api/v1/files/{data['id']}/content"
    assert data["filename"] == "holiday.png"
    assert data["size"] == len(content)
    assert data["type"] == "image/png"
    assert data["sha256"] == hashlib.sha256(content).hexdigest()
    assert data["taskId"] is None
    assert RFC3339_Z.fullmatch(data["createdAt"])
    assert response.headers["Location"] == f"/api/v1/files/{data['id']}"
    fetched = api.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.get_json()["data"] == data
    assert storage_of(app).path(data["sha256"]).read_bytes() == content


@pytest.mark.parametrize(("build", "expected"), [
    (media.png, "image/png"), (media.jpeg, "image/jpeg"), (media.pdf, "application/pdf")])
def test_type_is_sniffed_from_the_bytes_not_the_label(api, build, expected):
    content = build(media.token())
    data = upload_ok(api, content, "upload.bin")
    assert data["type"] == expected
    assert data["size"] == len(content)
    download = api.get(data["url"])
    assert download.status_code == 200
    assert download.headers["Content-Type"].split(";")[0] == expected
    assert download.data == content


def test_a_jpeg_labelled_as_png_is_stored_as_jpeg(api):
    content = media.jpeg(media.token())
    data = upload_ok(api, content, "photo.png")
    assert data["type"] == "image/jpeg"


def test_several_files_in_the_files_field(api):
    contents = [media.png(media.token()), media.jpeg(media.token()), media.pdf(media.token())]
    names = ["a.png", "b.jpg", "c.pdf"]
    response = api.post("/upload", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(c), n, "application/octet-stream") for c, n in zip(contents, names)]})
    assert response.status_code == 201, response.get_json()
    files = response.get_json()["data"]["files"]
    assert [f["filename"] for f in files] == names
    assert [f["type"] for f in files] == ["image/png", "image/jpeg", "application/pdf"]
    assert [f["sha256"] for f in files] == [hashlib.sha256(c).hexdigest() for c in contents]
    assert len({f["id"] for f in files}) == 3
    for record, content in zip(files, contents):
        assert api.get(record["url"]).data == content
    listed = api.get("/files").get_json()
    assert listed["meta"]["total"] == 3


def test_task_id_attaches_the_file(api):
    task = api.create("tasks", title="Has an attachment")
    data = upload_ok(api, media.png(media.token()), taskId=task["id"])
    assert data["taskId"] == task["id"]
    assert api.get(f"/files/{data['id']}").get_json()["data"]["taskId"] == task["id"]


@pytest.mark.parametrize("foreign", [False, True], ids=["unknown-task", "other-accounts-task"])
def test_task_id_must_be_a_task_of_the_account(api, other_account, app, foreign):
    task_id = other_account.api.create("tasks", title="Not yours")["id"] if foreign else "tsk_nope"
    content = media.png(media.token())
    before = temp_files(app)
    body = assert_error(upload(api, content, taskId=task_id), 400, "VALIDATION_FAILED")
    assert "taskId" in body["details"]
    assert api.get("/files").get_json()["meta"]["total"] == 0
    assert blobs_on_disk(app, hashlib.sha256(content).hexdigest()) == []
    assert temp_files(app) <= before


def test_text_labelled_png_is_415(api, app):
    content = b"just some words, honestly not an image\n" * 20
    before = temp_files(app)
    body = assert_error(upload(api, content, "image.png", "image/png"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "image/png" in body["error"]
    assert api.get("/files").get_json()["meta"]["total"] == 0
    assert blobs_on_disk(app, hashlib.sha256(content).hexdigest()) == []
    assert temp_files(app) <= before


def test_one_disallowed_file_refuses_the_whole_request(api, app):
    good = media.png(media.token())
    response = api.post("/upload", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(good), "ok.png", "image/png"),
                  (io.BytesIO(b"<html><body>hi</body></html>"), "page.png", "image/png")]})
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert api.get("/files").get_json()["meta"]["total"] == 0
    assert blobs_on_disk(app, hashlib.sha256(good).hexdigest()) == []


def test_file_just_over_the_default_limit_is_413_without_leftovers(api, app):
    assert app.config["QUIVER"].upload_max_bytes == 10 * MiB
    content = media.png_of_size(10 * MiB + 1, media.token())
    before = temp_files(app)
    assert_error(upload(api, content), 413, "PAYLOAD_TOO_LARGE")
    assert temp_files(app) <= before
    assert blobs_on_disk(app, hashlib.sha256(content).hexdigest()) == []
    assert api.get("/files").get_json()["meta"]["total"] == 0


@pytest.fixture
def small_limit_app(backend_env, tmp_path):
    """An app with `UPLOAD_MAX_BYTES=1024`, `UPLOAD_MAX_FILES=3` and its own upload directory."""
    with extra_apps() as build:
        app = build({**backend_env, "UPLOAD_MAX_BYTES": "1024", "UPLOAD_MAX_FILES": "3",
                     "UPLOAD_DIR": str(tmp_path / "uploads")})
        with app.app_context():
            _, secret = accounts.create_account("small limits")
        yield app, ApiClient(app.test_client(), secret)


def test_upload_limit_is_per_file_and_oversize_leaves_no_temp_file(small_limit_app):
    app, api = small_limit_app
    upload_dir = app.config["QUIVER"].upload_dir
    assert upload_dir.name == "uploads" and storage_of(app).tmp == upload_dir / "tmp"
    exact = media.png_of_size(1024, media.token())
    assert upload_ok(api, exact)["size"] == 1024
    over = media.png_of_size(1025, media.token())
    assert_error(upload(api, over), 413, "PAYLOAD_TOO_LARGE")
    assert list(storage_of(app).tmp.iterdir()) == []
    assert blobs_on_disk(app, hashlib.sha256(over).hexdigest()) == []
    # Three files of 1000 bytes: over the per-file limit in total, each under it.
    three = [media.png_of_size(1000, media.token()) for _ in range(3)]
    response = api.post("/upload", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(c), f"{i}.png") for i, c in enumerate(three)]})
    assert response.status_code == 201, response.get_json()
    assert [f["size"] for f in response.get_json()["data"]["files"]] == [1000] * 3
    assert list(storage_of(app).tmp.iterdir()) == []


def test_an_oversize_second_file_discards_the_first_too(small_limit_app):
    app, api = small_limit_app
    first, second = media.png(media.token()), media.png_of_size(5000, media.token())
    response = api.post("/upload", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(first), "first.png"), (io.BytesIO(second), "second.png")]})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert list(storage_of(app).tmp.iterdir()) == []
    assert blobs_on_disk(app, hashlib.sha256(first).hexdigest()) == []
    assert api.get("/files").get_json()["meta"]["total"] == 0


def test_too_many_files_is_400(small_limit_app):
    app, api = small_limit_app
    response = api.post("/upload", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(media.png(media.token())), f"{i}.png") for i in range(4)]})
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert "files" in body["details"]
    assert list(storage_of(app).tmp.iterdir()) == []
    assert api.get("/files").get_json()["meta"]["total"] == 0


def test_zero_byte_file_is_no_file(api, app):
    before = temp_files(app)
    body = assert_error(upload(api, b"", "empty.png", "image/png"), 400, "VALIDATION_FAILED")
    assert any("No file provided" in m for m in body["details"]["file"])
    assert temp_files(app) <= before
    assert api.get("/files").get_json()["meta"]["total"] == 0


@pytest.mark.parametrize("data", [{}, {"taskId": "tsk_whatever"}, {"note": "only a text field"},
                                  {"attachment": (io.BytesIO(media.png("x")), "wrong-field.png")}],
                         ids=["empty-form", "task-only", "text-field", "wrong-field-name"])
def test_no_file_is_400(api, data):
    response = api.post("/upload", data=data, content_type="multipart/form-data")
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert any("No file provided" in m for m in body["details"]["file"])


@pytest.mark.parametrize(("kwargs"), [
    {"json": {"file": "aGVsbG8="}},
    {"data": media.png("raw"), "content_type": "image/png"},
    {"data": "file=x", "content_type": "application/x-www-form-urlencoded"},
], ids=["json", "raw-png", "urlencoded"])
def test_non_multipart_body_is_400(api, kwargs):
    body = assert_error(api.post("/upload", **kwargs), 400, "VALIDATION_FAILED")
    assert any("No file provided" in m for m in body["details"]["file"])
    assert api.get("/files").get_json()["meta"]["total"] == 0


# --- filenames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "kept"), [
    ("../../etc/passwd.png", "passwd.png"),
    ("/absolute/path/to/shot.png", "shot.png"),
    ("..\\..\\windows\\system32\\evil.png", "evil.png"),
    ("C:\\Users\\mallory\\photo.png", "photo.png"),
    ("bad\x01na\x1fme\x7f\x85.png", "badname.png"),
    ("tab\tbed.png", "tabbed.png"),
    ("Überprüfung 📄.pdf", "Überprüfung 📄.pdf"),
    ("日本語のファイル.png", "日本語のファイル.png"),
    ("..", "file"),
])
def test_filenames_are_sanitised(api, app, sent, kept):
    content = media.png(media.token())
    # The test client writes the name into the quoted-string as is; a backslash is sent
    # escaped (RFC 9110 quoted-pair), as a correct client would, so the server sees it.
    data = upload_ok(api, content, sent.replace("\\", "\\\\"))
    assert data["filename"] == kept
    assert "/" not in data["filename"] and "\\" not in data["filename"]
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in data["filename"])
    assert api.get(f"/files/{data['id']}").get_json()["data"]["filename"] == kept
    # The bytes live under their SHA-256, never under anything derived from the name.
    settings = app.config["QUIVER"]
    stored = storage_of(app).path(data["sha256"])
    assert stored == settings.upload_dir / data["sha256"][:2] / data["sha256"][2:4] / data["sha256"]
    assert stored.read_bytes() == content
    stem = kept.rsplit(".", 1)[0]
    assert not [p for p in settings.var_dir.rglob("*") if stem in p.name and stem != "file"]
    assert not (settings.var_dir / "etc").exists()


def test_unicode_filename_round_trips_in_content_disposition(api):
    name = "Überprüfung 📄.pdf"
    data = upload_ok(api, media.pdf(media.token()), name)
    disposition = api.get(data["url"]).headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    encoded = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition).group(1)
    assert encoded == quote(name, safe="")
    assert unquote(encoded) == name
    disposition.encode("latin-1")  # a header value: every character must be sendable as is


# --- downloading ---------------------------------------------------------------------------------


@pytest.fixture
def stored_png(api):
    content = media.png(media.token(), width=40, height=30)
    return upload_ok(api, content, "range test.png"), content


def test_download_equals_upload_with_headers(api, stored_png):
    data, content = stored_png
    response = api.get(data["url"])
    assert response.status_code == 200
    assert response.data == content
    assert media.png_pixels(response.data)[:2] == (40, 30)
    assert response.headers["Content-Type"] == "image/png"
    assert int(response.headers["Content-Length"]) == len(content)
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "filename*=UTF-8''range%20test.png" in response.headers["Content-Disposition"]
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{data["sha256"]}"'


def test_range_requests(api, stored_png):
    data, content = stored_png
    total = len(content)
    first = api.get(data["url"], headers={"Range": "bytes=0-9"})
    assert first.status_code == 206
    assert first.data == content[:10]
    assert first.headers["Content-Range"] == f"bytes 0-9/{total}"
    assert first.headers["Content-Length"] == "10"
    suffix = api.get(data["url"], headers={"Range": "bytes=-7"})
    assert suffix.status_code == 206
    assert suffix.data == content[-7:]
    assert suffix.headers["Content-Range"] == f"bytes {total - 7}-{total - 1}/{total}"
    tail = api.get(data["url"], headers={"Range": "bytes=20-"})
    assert tail.status_code == 206
    assert tail.data == content[20:]
    middle = api.get(data["url"], headers={"Range": f"bytes=5-{total + 100}"})
    assert middle.status_code == 206 and middle.data == content[5:]


@pytest.mark.parametrize("header", ["bytes={total}-", "bytes={far}-{farther}"])
def test_unsatisfiable_range_is_416(api, stored_png, header):
    data, content = stored_png
    total = len(content)
    response = api.get(data["url"], headers={
        "Range": header.format(total=total, far=total + 10, farther=total + 20)})
    assert response.status_code == 416
    assert response.headers.get("Content-Range") == f"bytes */{total}"
    assert response.get_json()["success"] is False


def test_if_none_match_is_304(api, stored_png):
    data, _ = stored_png
    etag = api.get(data["url"]).headers["ETag"]
    response = api.get(data["url"], headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.data == b""
    changed = api.get(data["url"], headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200


# --- content addressing --------------------------------------------------------------------------


def test_identical_uploads_share_one_blob_until_the_last_is_deleted(api, app):
    content = media.pdf(media.token())
    sha = hashlib.sha256(content).hexdigest()
    first = upload_ok(api, content, "one.pdf")
    second = upload_ok(api, content, "two.pdf")
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"] == sha
    assert len(file_rows(app, sha)) == 2
    assert blob_row(app, sha).refs == 2
    assert blobs_on_disk(app, sha) == [storage_of(app).path(sha)]

    assert api.delete(f"/files/{first['id']}").status_code == 204
    assert blob_row(app, sha).refs == 1
    assert storage_of(app).path(sha).read_bytes() == content
    assert api.get(second["url"]).data == content
    assert api.get(first["url"]).status_code == 404

    assert api.delete(f"/files/{second['id']}").status_code == 204
    assert blob_row(app, sha) is None
    assert blobs_on_disk(app, sha) == []
    assert file_rows(app, sha) == []


def test_identical_content_of_two_accounts_is_shared_but_separately_owned(api, other_account, app):
    content = media.jpeg(media.token())
    sha = hashlib.sha256(content).hexdigest()
    mine = upload_ok(api, content)
    theirs = upload_ok(other_account.api, content)
    assert blob_row(app, sha).refs == 2
    assert api.delete(f"/files/{mine['id']}").status_code == 204
    assert other_account.api.get(theirs["url"]).data == content
    assert other_account.api.delete(f"/files/{theirs['id']}").status_code == 204
    assert blobs_on_disk(app, sha) == []


def test_a_rolled_back_delete_keeps_the_bytes(api, app):
    """An atomic batch that deletes a file and then fails keeps the record, its count and its bytes."""
    content = media.pdf(media.token())
    sha = hashlib.sha256(content).hexdigest()
    kept = upload_ok(api, content)
    response = api.post("/batch", json={"atomic": True, "requests": [
        {"id": "delete", "method": "DELETE", "path": f"/files/{kept['id']}"},
        {"id": "fail", "method": "POST", "path": "/tasks", "body": {"title": ""}}]})
    assert [r["status"] for r in response.get_json()["responses"]] == [424, 400]
    assert blob_row(app, sha).refs == 1
    assert blobs_on_disk(app, sha) == [storage_of(app).path(sha)]
    assert api.get(kept["url"]).data == content
    assert api.delete(f"/files/{kept['id']}").status_code == 204
    assert blob_row(app, sha) is None and blobs_on_disk(app, sha) == []


def test_purge_removes_only_blobs_no_file_uses(api, app):
    """A blob whose purge after the deleting commit never ran (a crash) goes at the next purge."""
    orphan, used = media.png(media.token()), media.jpeg(media.token())
    orphan_sha, used_sha = (hashlib.sha256(c).hexdigest() for c in (orphan, used))
    upload_ok(api, used)
    gone = upload_ok(api, orphan)
    with app.app_context():
        File.delete().where(File.id == gone["id"]).execute()
        Blob.update(refs=0).where(Blob.sha256 == orphan_sha).execute()
        assert file_service.purge_unused_blobs() >= 1
        assert file_service.purge_unused_blobs() == 0
    assert blob_row(app, orphan_sha) is None and blobs_on_disk(app, orphan_sha) == []
    assert blob_row(app, used_sha).refs == 1
    assert storage_of(app).path(used_sha).read_bytes() == used


def test_reupload_after_the_bytes_were_removed_stores_them_again(api, app):
    content = media.png(media.token())
    sha = hashlib.sha256(content).hexdigest()
    first = upload_ok(api, content)
    assert api.delete(f"/files/{first['id']}").status_code == 204
    assert blobs_on_disk(app, sha) == []
    again = upload_ok(api, content)
    assert api.get(again["url"]).data == content
    assert blob_row(app, sha).refs == 1


# --- listing, reading, deleting ------------------------------------------------------------------


def test_list_pages_newest_first_and_filters_by_task(api):
    task = api.create("tasks", title="Pictures")
    loose = [upload_ok(api, media.png(media.token()), f"loose{i}.png") for i in range(2)]
    attached = upload_ok(api, media.pdf(media.token()), "attached.pdf", taskId=task["id"])

    first = api.get("/files", query_string={"limit": 2})
    assert first.status_code == 200
    body = first.get_json()
    assert [f["id"] for f in body["data"]] == [attached["id"], loose[1]["id"]]
    assert body["meta"]["total"] == 3
    assert body["meta"]["page"] == 1 and body["meta"]["limit"] == 2
    assert body["meta"]["hasNextPage"] is True and body["meta"]["hasPreviousPage"] is False
    second = api.get("/files", query_string={"limit": 2, "page": 2}).get_json()
    assert [f["id"] for f in second["data"]] == [loose[0]["id"]]
    assert second["meta"]["hasNextPage"] is False and second["meta"]["hasPreviousPage"] is True
    assert second["data"][0] == loose[0]

    filtered = api.get("/files", query_string={"taskId": task["id"]}).get_json()
    assert filtered["data"] == [attached]
    assert filtered["meta"]["total"] == 1


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"page": "0"}, {"page": "x"},
                                   {"sort": "size"}])
def test_bad_list_query_is_400(api, query):
    body = assert_error(api.get("/files", query_string=query), 400, "VALIDATION_FAILED")
    assert set(body["details"]) == set(query)


def test_delete_is_204_then_404(api):
    data = upload_ok(api, media.png(media.token()))
    assert api.get(f"/files/{data['id']}").status_code == 200
    response = api.delete(f"/files/{data['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert_error(api.get(f"/files/{data['id']}"), 404, "NOT_FOUND")
    assert_error(api.get(data["url"]), 404, "NOT_FOUND")
    assert_error(api.delete(f"/files/{data['id']}"), 404, "NOT_FOUND")
    assert api.get("/files").get_json()["data"] == []


def test_unknown_file_is_404(api):
    for response in (api.get(f"/files/{MISSING_FILE}"), api.get(f"/files/{MISSING_FILE}/content"),
                     api.delete(f"/files/{MISSING_FILE}")):
        assert_error(response, 404, "NOT_FOUND")


def test_deleting_a_task_detaches_its_files(api):
    task = api.create("tasks", title="Short-lived")
    content = media.png(media.token())
    data = upload_ok(api, content, taskId=task["id"])
    assert api.delete(f"/tasks/{task['id']}").status_code == 204
    kept = api.get(f"/files/{data['id']}")
    assert kept.status_code == 200
    assert kept.get_json()["data"]["taskId"] is None
    assert api.get(data["url"]).data == content
    assert api.get("/files", query_string={"taskId": task["id"]}).get_json()["data"] == []


# --- events --------------------------------------------------------------------------------------


def test_file_created_and_deleted_events(api):
    data = upload_ok(api, media.png(media.token()), "evented.png")
    created = events_of(api, "file.created")
    assert len(created) == 1
    assert created[0]["type"] == "file.created"
    assert created[0]["data"] == data
    assert "previousAttributes" not in created[0]
    assert api.delete(f"/files/{data['id']}").status_code == 204
    deleted = events_of(api, "file.deleted")
    assert len(deleted) == 1
    assert deleted[0]["data"] == data


def test_refused_uploads_emit_nothing(api):
    assert upload(api, b"plain text", "x.png").status_code == 415
    assert upload(api, b"").status_code == 400
    assert events_of(api, "file.created") == []


def test_multi_file_upload_emits_one_event_per_file(api):
    contents = [media.png(media.token()) for _ in range(3)]
    response = api.post("/upload", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(c), f"{i}.png") for i, c in enumerate(contents)]})
    assert response.status_code == 201
    ids = {f["id"] for f in response.get_json()["data"]["files"]}
    assert {e["data"]["id"] for e in events_of(api, "file.created")} == ids


# --- accounts and scopes -------------------------------------------------------------------------


def test_another_accounts_file_is_404_and_never_listed(api, other_account):
    content = media.png(media.token())
    theirs = upload_ok(other_account.api, content)
    assert_error(api.get(f"/files/{theirs['id']}"), 404, "NOT_FOUND")
    assert_error(api.get(theirs["url"]), 404, "NOT_FOUND")
    assert_error(api.delete(f"/files/{theirs['id']}"), 404, "NOT_FOUND")
    assert api.get("/files").get_json()["data"] == []
    assert events_of(api, "file.created") == []
    # Still theirs, untouched.
    assert other_account.api.get(theirs["url"]).data == content


def test_read_only_key_cannot_upload_or_delete(account):
    reader = account.key("read")
    body = assert_error(upload(reader, media.png(media.token())), 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "write"
    data = upload_ok(account.api, media.png(media.token()))
    assert reader.get(f"/files/{data['id']}").status_code == 200
    assert reader.get(data["url"]).status_code == 200
    assert_error(reader.delete(f"/files/{data['id']}"), 403, "INSUFFICIENT_SCOPE")


def test_write_only_key_can_upload_but_not_read(account):
    writer = account.key("write")
    data = upload_ok(writer, media.png(media.token()))
    for response in (writer.get("/files"), writer.get(f"/files/{data['id']}"), writer.get(data["url"])):
        body = assert_error(response, 403, "INSUFFICIENT_SCOPE")
        assert body["details"]["required"] == "read"
    assert writer.delete(f"/files/{data['id']}").status_code == 204


def test_upload_needs_a_key(client):
    response = client.post("/api/v1/upload", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(media.png("anon")), "a.png")})
    assert_error(response, 401, "UNAUTHORIZED")


# --- over real HTTP (gunicorn) -------------------------------------------------------------------


def test_upload_and_download_over_http(live_server, account, app):
    headers = {"Authorization": f"Bearer {account.api.key}"}
    content = media.png(media.token(), width=64, height=64)
    before = temp_files(app)
    created = requests.post(f"{live_server}/api/v1/upload", headers=headers, timeout=10,
                            files={"file": ("Überprüfung 📄.png", content, "text/plain")})
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["filename"] == "Überprüfung 📄.png"
    assert data["type"] == "image/png"
    assert data["size"] == len(content)
    assert created.headers["Location"] == f"/api/v1/files/{data['id']}"

    download = requests.get(f"{live_server}{data['url']}", headers=headers, timeout=10)
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["Accept-Ranges"] == "bytes"
    assert f"filename*=UTF-8''{quote(data['filename'], safe='')}" in download.headers["Content-Disposition"]
    part = requests.get(f"{live_server}{data['url']}", timeout=10,
                        headers={**headers, "Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == content[:8]
    assert temp_files(app) <= before


def test_many_files_and_refusals_over_http(live_server, account, app):
    headers = {"Authorization": f"Bearer {account.api.key}"}
    contents = [media.pdf(media.token()), media.jpeg(media.token())]
    created = requests.post(f"{live_server}/api/v1/upload", headers=headers, timeout=10,
                            files=[("files", ("a.pdf", contents[0])), ("files", ("b.jpg", contents[1]))])
    assert created.status_code == 201, created.text
    assert [f["type"] for f in created.json()["data"]["files"]] == ["application/pdf", "image/jpeg"]
    before = temp_files(app)
    refused = requests.post(f"{live_server}/api/v1/upload", headers=headers, timeout=30,
                            files={"file": ("big.png", media.png_of_size(10 * MiB + 1))})
    assert refused.status_code == 413
    assert refused.json()["code"] == "PAYLOAD_TOO_LARGE"
    text = requests.post(f"{live_server}/api/v1/upload", headers=headers, timeout=10,
                         files={"file": ("fake.png", b"hello " * 100, "image/png")})
    assert text.status_code == 415 and text.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert temp_files(app) <= before


def test_concurrent_uploads_and_deletes_of_identical_content_keep_the_bytes(live_server, account, app):
    """Two threads keep uploading the same bytes while two others upload and delete them."""
    content = media.png(media.token())
    sha = hashlib.sha256(content).hexdigest()
    keys = [account.key("read", "write").key for _ in range(4)]
    barrier = threading.Barrier(4)
    rounds = 8

    def run(key: str, delete: bool) -> list[int]:
        headers = {"Authorization": f"Bearer {key}"}
        statuses = []
        barrier.wait()
        for i in range(rounds):
            response = requests.post(f"{live_server}/api/v1/upload", headers=headers, timeout=30,
                                     files={"file": (f"{i}.png", content)})
            statuses.append(response.status_code)
            if delete and response.status_code == 201:
                file_id = response.json()["data"]["id"]
                statuses.append(requests.delete(f"{live_server}/api/v1/files/{file_id}",
                                                headers=headers, timeout=30).status_code)
        return statuses

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, keys, [False, False, True, True]))
    assert results[0] == results[1] == [201] * rounds
    assert results[2] == results[3] == [201, 204] * rounds

    rows = file_rows(app, sha)
    assert len(rows) == 2 * rounds
    assert blob_row(app, sha).refs == len(rows)
    assert blobs_on_disk(app, sha) == [storage_of(app).path(sha)]
    headers = {"Authorization": f"Bearer {account.api.key}"}
    for row in rows[:3] + rows[-3:]:
        got = requests.get(f"{live_server}/api/v1/files/{row.id}/content", headers=headers, timeout=10)
        assert got.content == content

    for row in rows:
        assert requests.delete(f"{live_server}/api/v1/files/{row.id}", headers=headers,
                               timeout=10).status_code == 204
    assert blob_row(app, sha) is None
    assert blobs_on_disk(app, sha) == []


def test_concurrent_first_uploads_of_new_content_all_succeed(live_server, account, app):
    """Several clients upload the same never-seen bytes at once: one blob, every record counted."""
    clients = 6
    keys = [account.key("read", "write").key for _ in range(clients)]
    for _ in range(3):
        content = media.jpeg(media.token())
        sha = hashlib.sha256(content).hexdigest()
        barrier = threading.Barrier(clients)

        def run(key: str, content=content, barrier=barrier) -> int:
            barrier.wait()
            return requests.post(f"{live_server}/api/v1/upload", timeout=30,
                                 headers={"Authorization": f"Bearer {key}"},
                                 files={"file": ("same.jpg", content)}).status_code

        with ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(run, keys))
        assert statuses == [201] * clients
        assert len(file_rows(app, sha)) == clients
        assert blob_row(app, sha).refs == clients
        assert storage_of(app).path(sha).read_bytes() == content


def test_concurrent_deletes_of_one_file_drop_one_reference(live_server, account, app):
    """Racing DELETEs of the same record: one 204, the rest 404, and the twin keeps its bytes."""
    clients = 8
    headers = {"Authorization": f"Bearer {account.api.key}"}
    for _ in range(3):
        content = media.pdf(media.token())
        sha = hashlib.sha256(content).hexdigest()
        target = upload_ok(account.api, content)
        twin = upload_ok(account.api, content)
        barrier = threading.Barrier(clients)

        def run(_, target=target, barrier=barrier) -> int:
            barrier.wait()
            return requests.delete(f"{live_server}/api/v1/files/{target['id']}", headers=headers,
                                   timeout=30).status_code

        with ThreadPoolExecutor(clients) as pool:
            statuses = sorted(pool.map(run, range(clients)))
        assert statuses == [204] + [404] * (clients - 1)
        assert blob_row(app, sha).refs == 1
        assert storage_of(app).path(sha).read_bytes() == content
        assert account.api.get(twin["url"]).data == content


@pytest.mark.parametrize("query", ["page=²", "limit=²", "page=0", "limit=101", "page=1&page=2"])
def test_file_list_rejects_bad_page_parameters(api, query):
    response = api.get(f"/files?{query}")
    assert response.status_code == 400
    assert response.get_json()["code"] == "VALIDATION_FAILED"
