"""Where file bytes live: a local directory (default) or an S3-compatible bucket.

Both are content-addressed by SHA-256, so identical uploads share their bytes;
the `blobs` table counts references and the bytes go when the last file that
uses them is deleted. `STORAGE_BACKEND=local|s3` picks one.
"""

import os
from pathlib import Path

from api.config import Settings


class LocalStorage:
    """Blobs under `UPLOAD_DIR/ab/cd/<sha256>`, temp files under `UPLOAD_DIR/tmp`."""

    def __init__(self, root: Path):
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, temp_path: Path, sha256: str) -> None:
        """Move a finished temp file into place (atomic rename on the same filesystem)."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, target)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def download_url(self, sha256: str, filename: str, content_type: str) -> str | None:
        """Local files are streamed by the app itself."""
        return None


class S3Storage:
    """Blobs as objects `<S3_PREFIX><sha256>` in `S3_BUCKET` (any S3-compatible server).

    Temp files are still written locally while an upload streams in; downloads
    redirect to a short-lived presigned URL (which also serves `Range`).
    """

    def __init__(self, settings: Settings):
        import boto3

        self.bucket = settings.s3["bucket"]
        self.prefix = settings.s3["prefix"]
        self.client = boto3.client("s3", endpoint_url=settings.s3["endpoint_url"],
                                   region_name=settings.s3["region_name"])
        self.tmp = settings.upload_dir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def put(self, temp_path: Path, sha256: str) -> None:
        self.client.upload_file(str(temp_path), self.bucket, self.prefix + sha256)
        temp_path.unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + sha256)
            return True
        except ClientError:
            return False

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + sha256)

    def download_url(self, sha256: str, filename: str, content_type: str) -> str:
        from urllib.parse import quote

        return self.client.generate_presigned_url("get_object", ExpiresIn=300, Params={
            "Bucket": self.bucket, "Key": self.prefix + sha256,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


_storage = {}


def get_storage(settings: Settings):
    """The configured storage (one per settings object)."""
    key = id(settings)
    if key not in _storage:
        _storage[key] = (S3Storage(settings) if settings.storage_backend == "s3"
                         else LocalStorage(settings.upload_dir))
    return _storage[key]

