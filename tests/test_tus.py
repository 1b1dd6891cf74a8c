"""Resumable uploads with tus 1.0 at `/api/v1/uploads/tus` (issue 7), against a real gunicorn.

Core protocol, plus the creation, termination, checksum (sha1 and sha256) and expiration
extensions. Every response carries `Tus-Resumable: 1.0.0`; a request without it is 412.
A finished upload becomes a file record through the same path as `POST /upload` (type
sniffing, content addressing, `file.created`), named by `Quiver-File-Id` on the last
PATCH and on later HEADs. The `tuspy` client from PyPI drives the happy paths, including
an upload interrupted half-way and resumed by a new uploader from the server's offset;
the error cases are plain HTTP requests so that each status is asserted exactly.
"""

import base64
import hashlib
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusUploadFailed

from api.models import File, TusUpload
from api.storage import get_storage
from api.timeutil import utcnow
from tests import media

TUS = "/api/v1/uploads/tus"
VERSION = "1.0.0"
FILE_ID = re.compile(r"fil_[0-9A-HJKMNP-TV-Z]{26}")
MiB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------


def checked(response, status: int):
    """Assert the status and the `Tus-Resumable` header every tus response carries."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("Tus-Resumable") == VERSION, dict(response.headers)
    return response


class Tus:
    """Raw tus requests for one key against the live server."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.endpoint = base + TUS
        self.key = key

    def headers(self, extra=None, version: str | None = VERSION) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"}
        if version is not None:
            headers["Tus-Resumable"] = version
        return {**headers, **(extra or {})}

    def create(self, length: int, metadata: str | None = None, status: int = 201):
        extra = {"Upload-Length": str(length)}
        if metadata is not None:
            extra["Upload-Metadata"] = metadata
        return checked(requests.post(self.endpoint, headers=self.headers(extra), timeout=10), status)

    def url(self, response) -> str:
        return requests.compat.urljoin(self.endpoint, response.headers["Location"])

    def new(self, length: int, metadata: str | None = None) -> str:
        return self.url(self.create(length, metadata))

    def head(self, url: str, status: int = 200):
        return checked(requests.head(url, headers=self.headers(), timeout=10), status)

    def patch(self, url: str, data: bytes, offset: int, status: int = 204, checksum: str | None = None,
              content_type: str = "application/offset+octet-stream", version: str | None = VERSION):
        extra = {"Upload-Offset": str(offset), "Content-Type": content_type}
        if checksum is not None:
            extra["Upload-Checksum"] = checksum
        return checked(requests.patch(url, data=data, headers=self.headers(extra, version), timeout=30),
                       status)

    def delete(self, url: str, status: int = 204):
        return checked(requests.delete(url, headers=self.headers(), timeout=10), status)

    def get_json(self, path: str) -> dict:
        response = requests.get(self.base + path, headers=self.headers(), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def content(self, file_id: str) -> bytes:
        response = requests.get(f"{self.base}/api/v1/files/{file_id}/content", headers=self.headers(),
                                timeout=10)
        assert response.status_code == 200, response.text
        return response.content

    def tuspy(self) -> tus_client.TusClient:
        return tus_client.TusClient(self.endpoint, headers={"Authorization": f"Bearer {self.key}"})


@pytest.fixture
def tus(live_server, account) -> Tus:
    return Tus(live_server, account.api.key)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def digest_header(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def part_file(app, url: str):
    return get_storage(app.config["QUIVER"]).tmp / f"tus-{upload_id(url)}"


def file_records(app, sha256: str) -> list:
    with app.app_context():
        return list(File.select().where(File.sha256 == sha256))


# --- discovery and the version header ------------------------------------------------------------


def test_options_describes_the_server_without_a_key(live_server):
    response = checked(requests.options(live_server + TUS, timeout=10), 204)
    assert VERSION in [v.strip() for v in response.headers["Tus-Version"].split(",")]
    extensions = {e.strip() for e in response.headers["Tus-Extension"].split(",")}
    assert {"creation", "termination", "checksum", "expiration"} <= extensions
    assert response.headers["Tus-Max-Size"] == str(10 * MiB)
    algorithms = {a.strip() for a in response.headers["Tus-Checksum-Algorithm"].split(",")}
    assert {"sha1", "sha256"} <= algorithms


@pytest.mark.parametrize("version", [None, "0.2.2"], ids=["missing", "unsupported"])
def test_requests_without_tus_resumable_are_412(tus, version):
    url = tus.new(10)
    response = checked(requests.post(tus.endpoint, timeout=10,
                                     headers=tus.headers({"Upload-Length": "10"}, version)), 412)
    assert response.json()["code"] == "PRECONDITION_FAILED"
    assert response.headers["Tus-Version"] == VERSION
    checked(requests.head(url, headers=tus.headers(version=version), timeout=10), 412)
    tus.patch(url, b"0123456789", 0, status=412, version=version)
    checked(requests.delete(url, headers=tus.headers(version=version), timeout=10), 412)
    assert tus.head(url).headers["Upload-Offset"] == "0"


def test_creation_answers_location_offset_and_expiry(tus, app):
    response = tus.create(1234, f"filename {b64('a.png')}")
    assert re.fullmatch(rf"{TUS}/\S+", response.headers["Location"])
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Expires"].endswith("GMT")
    url = tus.url(response)
    assert part_file(app, url).exists()
    head = tus.head(url)
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == "1234"
    assert head.headers["Cache-Control"] == "no-store"
    assert "Quiver-File-Id" not in head.headers


@pytest.mark.parametrize(("length", "status"), [(None, 400), ("abc", 400), ("-5", 400), ("0", 400),
                                                ("²", 400), (str(10 * MiB + 1), 413)])
def test_creation_validates_upload_length(tus, length, status):
    extra = {} if length is None else {"Upload-Length": length}
    response = checked(requests.post(tus.endpoint, headers=tus.headers(extra), timeout=10), status)
    assert response.json()["code"] == ("PAYLOAD_TOO_LARGE" if status == 413 else "VALIDATION_FAILED")
    assert "Location" not in response.headers


def test_upload_length_at_the_limit_is_accepted(tus):
    assert tus.create(10 * MiB).headers["Upload-Offset"] == "0"


# --- tuspy ---------------------------------------------------------------------------------------


def test_full_upload_with_tuspy(tus, app):
    content = media.png_of_size(300_000, media.token())
    uploader = tus.tuspy().uploader(file_stream=io.BytesIO(content),
                                    metadata={"filename": "../scans/Überprüfung.png"})
    uploader.upload()
    assert uploader.offset == len(content)
    assert uploader.request.status_code == 204
    file_id = uploader.request.response_headers["quiver-file-id"]
    assert FILE_ID.fullmatch(file_id)
    head = tus.head(uploader.url)
    assert head.headers["Upload-Offset"] == str(len(content))
    assert head.headers["Quiver-File-Id"] == file_id
    assert head.headers["Quiver-File-Url"] == f"/api/v1/files/{file_id}/content"

    record = tus.get_json(f"/api/v1/files/{file_id}")["data"]
    assert record["filename"] == "Überprüfung.png"
    assert record["size"] == len(content)
    assert record["type"] == "image/png"
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert record["taskId"] is None
    assert tus.content(file_id) == content
    assert not part_file(app, uploader.url).exists()
    created = tus.get_json("/api/v1/events?type=file.created")["data"]
    assert [e["data"] for e in created] == [record]


def test_empty_or_missing_upload_metadata_is_accepted(tus):
    content = media.pdf(media.token())
    # tuspy sends `Upload-Metadata:` with an empty value when there is no metadata.
    uploader = tus.tuspy().uploader(file_stream=io.BytesIO(content))
    uploader.upload()
    file_id = uploader.request.response_headers["quiver-file-id"]
    assert tus.get_json(f"/api/v1/files/{file_id}")["data"]["type"] == "application/pdf"
    assert tus.content(file_id) == content
    for metadata in ("", None):
        url = tus.new(len(content), metadata)
        done = tus.patch(url, content, 0)
        record = tus.get_json(f"/api/v1/files/{done.headers['Quiver-File-Id']}")["data"]
        assert record["filename"] == "file"  # no name given
        assert record["sha256"] == hashlib.sha256(content).hexdigest()


def test_metadata_task_id_attaches_and_must_exist(tus, account):
    task = account.api.create("tasks", title="Scanned")
    content = media.jpeg(media.token())
    uploader = tus.tuspy().uploader(file_stream=io.BytesIO(content),
                                    metadata={"filename": "scan.jpg", "taskId": task["id"]})
    uploader.upload()
    record = tus.get_json(f"/api/v1/files/{uploader.request.response_headers['quiver-file-id']}")["data"]
    assert record["taskId"] == task["id"]
    assert record["type"] == "image/jpeg"
    response = tus.create(10, f"taskId {b64('tsk_missing')}", status=400)
    assert "taskId" in response.json()["details"]
    tus.create(10, "filename not-base64!", status=400)


def test_interrupted_upload_resumes_from_the_servers_offset(tus, app):
    content = media.png_of_size(500_000, media.token())
    half = len(content) // 2
    first = tus.tuspy().uploader(file_stream=io.BytesIO(content), chunk_size=half,
                                 metadata={"filename": "resumed.png"})
    first.upload_chunk()  # ...and then the client goes away
    assert first.offset == half
    head = tus.head(first.url)
    assert head.headers["Upload-Offset"] == str(half)
    assert "Quiver-File-Id" not in head.headers
    assert part_file(app, first.url).stat().st_size == half

    second = tus.tuspy().uploader(file_stream=io.BytesIO(content), url=first.url)
    assert second.offset == half  # asked the server (HEAD)
    second.upload()
    assert second.offset == len(content)
    file_id = second.request.response_headers["quiver-file-id"]
    record = tus.get_json(f"/api/v1/files/{file_id}")["data"]
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert record["size"] == len(content)
    assert record["filename"] == "resumed.png"
    assert tus.content(file_id) == content
    assert not part_file(app, first.url).exists()


def test_tuspy_with_checksums_and_small_chunks(tus):
    content = media.png_of_size(100_000, media.token())
    uploader = tus.tuspy().uploader(file_stream=io.BytesIO(content), chunk_size=30_000,
                                    upload_checksum=True)
    uploader.upload()
    assert uploader.offset == len(content)
    assert tus.content(uploader.request.response_headers["quiver-file-id"]) == content


def test_identical_content_through_tus_shares_the_blob_and_leaves_no_part_file(tus, app):
    content = media.pdf(media.token())
    sha = hashlib.sha256(content).hexdigest()
    urls, ids = [], []
    for _ in range(2):
        uploader = tus.tuspy().uploader(file_stream=io.BytesIO(content))
        uploader.upload()
        urls.append(uploader.url)
        ids.append(uploader.request.response_headers["quiver-file-id"])
    assert ids[0] != ids[1]
    assert len(file_records(app, sha)) == 2
    assert [p for p in app.config["QUIVER"].upload_dir.rglob(sha)] == [
        get_storage(app.config["QUIVER"]).path(sha)]
    assert not any(part_file(app, url).exists() for url in urls)


def test_a_completed_upload_is_not_completed_twice(tus, app):
    content = media.png(media.token())
    url = tus.new(len(content))
    done = tus.patch(url, content, 0)
    file_id = done.headers["Quiver-File-Id"]
    again = tus.patch(url, b"", len(content))
    assert again.headers["Upload-Offset"] == str(len(content))
    assert again.headers["Quiver-File-Id"] == file_id
    tus.patch(url, b"x", len(content), status=413)
    assert [r.id for r in file_records(app, hashlib.sha256(content).hexdigest())] == [file_id]
    assert tus.head(url).headers["Quiver-File-Id"] == file_id


# --- checksums -----------------------------------------------------------------------------------


def test_checksums_sha1_and_sha256_are_verified(tus):
    content = media.png_of_size(4000, media.token())
    url = tus.new(len(content))
    first = tus.patch(url, content[:1500], 0, checksum=digest_header("sha1", content[:1500]))
    assert first.headers["Upload-Offset"] == "1500"
    wrong = tus.patch(url, content[1500:3000], 1500, status=460,
                      checksum=digest_header("sha256", b"something else"))
    assert wrong.json()["code"] == "CHECKSUM_MISMATCH"
    assert tus.head(url).headers["Upload-Offset"] == "1500"
    wrong_sha1 = tus.patch(url, content[1500:], 1500, status=460, checksum=digest_header("sha1", b"x"))
    assert "Quiver-File-Id" not in wrong_sha1.headers
    assert tus.head(url).headers["Upload-Offset"] == "1500"
    done = tus.patch(url, content[1500:], 1500, checksum=digest_header("sha256", content[1500:]))
    assert done.headers["Upload-Offset"] == str(len(content))
    assert tus.content(done.headers["Quiver-File-Id"]) == content


@pytest.mark.parametrize("header", ["md5 " + base64.b64encode(b"0" * 16).decode(), "sha1 !!notbase64!!"])
def test_unsupported_or_malformed_checksum_is_400(tus, header):
    url = tus.new(10)
    response = tus.patch(url, b"0123456789", 0, status=400, checksum=header)
    assert "Upload-Checksum" in response.json()["details"]
    assert tus.head(url).headers["Upload-Offset"] == "0"


# --- protocol errors -----------------------------------------------------------------------------


def test_wrong_offset_is_409(tus):
    content = media.png(media.token())
    url = tus.new(len(content))
    tus.patch(url, content[:10], 0)
    for offset in (0, 5, 11):
        response = tus.patch(url, content[10:], offset, status=409)
        assert response.json()["code"] == "CONFLICT"
    tus.patch(url, content[10:], "ten", status=409)
    assert tus.head(url).headers["Upload-Offset"] == "10"


def test_patch_needs_the_offset_octet_stream_type(tus):
    url = tus.new(10)
    response = tus.patch(url, b"0123456789", 0, status=415, content_type="application/octet-stream")
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert tus.head(url).headers["Upload-Offset"] == "0"


def test_more_bytes_than_upload_length_is_413(tus, app):
    url = tus.new(100)
    tus.patch(url, b"a" * 40, 0, status=204)
    response = tus.patch(url, b"b" * 100, 40, status=413)
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert tus.head(url).headers["Upload-Offset"] == "40"
    assert part_file(app, url).read_bytes() == b"a" * 40


def test_termination(tus, app):
    url = tus.new(100)
    tus.patch(url, b"x" * 50, 0)
    assert part_file(app, url).exists()
    response = tus.delete(url)
    assert response.content == b""
    tus.head(url, status=404)
    tus.patch(url, b"x" * 50, 50, status=404)
    tus.delete(url, status=404)
    assert not part_file(app, url).exists()


def test_expired_upload_is_410_and_purged(tus, app):
    url = tus.new(100)
    tus.patch(url, b"x" * 10, 0)
    with app.app_context():
        TusUpload.update(expires_at=utcnow() - timedelta(minutes=1)).where(
            TusUpload.id == upload_id(url)).execute()
    tus.head(url, status=410)
    tus.patch(url, b"x" * 10, 10, status=410)
    tus.new(5)  # creating uploads purges expired ones, part files included
    with app.app_context():
        assert TusUpload.get_or_none(TusUpload.id == upload_id(url)) is None
    assert not part_file(app, url).exists()
    tus.head(url, status=404)


def test_another_accounts_upload_is_404(tus, live_server, other_account):
    url = tus.new(20)
    tus.patch(url, b"y" * 10, 0)
    stranger = Tus(live_server, other_account.api.key)
    stranger.head(url, status=404)
    stranger.patch(url, b"z" * 10, 10, status=404)
    stranger.delete(url, status=404)
    assert tus.head(url).headers["Upload-Offset"] == "10"
    assert stranger.get_json("/api/v1/files")["data"] == []


def test_read_only_key_cannot_upload(live_server, account):
    reader = Tus(live_server, account.key("read").key)
    response = reader.create(10, status=403)
    assert response.json()["code"] == "INSUFFICIENT_SCOPE"


def test_completed_upload_of_a_disallowed_type_is_415(tus, app):
    content = b"#!/bin/sh\necho definitely not a picture\n" * 50
    uploader = tus.tuspy().uploader(file_stream=io.BytesIO(content), metadata={"filename": "x.png"})
    with pytest.raises(TusUploadFailed) as failure:
        uploader.upload()
    assert failure.value.status_code == 415
    tus.head(uploader.url, status=404)
    assert not part_file(app, uploader.url).exists()
    assert file_records(app, hashlib.sha256(content).hexdigest()) == []
    assert tus.get_json("/api/v1/events?type=file.created")["data"] == []


def test_racing_patches_at_one_offset_write_once(tus, app):
    """Clients repeating a PATCH at the same offset: one is applied, the others are refused.

    Both for a middle chunk and for the last one (which turns the upload into a file).
    """
    clients = 8

    def race(url: str, data: bytes, offset: int) -> list[int]:
        barrier = threading.Barrier(clients)

        def run(_) -> int:
            barrier.wait()
            return requests.patch(url, data=data, timeout=30, headers=tus.headers({
                "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            ).status_code

        with ThreadPoolExecutor(clients) as pool:
            return sorted(pool.map(run, range(clients)))

    for _ in range(3):
        content = media.png_of_size(2000, media.token())
        half = len(content) // 2
        url = tus.new(len(content))
        assert race(url, content[:half], 0) == [204] + [409] * (clients - 1)
        assert tus.head(url).headers["Upload-Offset"] == str(half)
        assert race(url, content[half:], half) == [204] + [409] * (clients - 1)
        head = tus.head(url)
        assert head.headers["Upload-Offset"] == str(len(content))
        assert tus.content(head.headers["Quiver-File-Id"]) == content
        assert len(file_records(app, hashlib.sha256(content).hexdigest())) == 1
