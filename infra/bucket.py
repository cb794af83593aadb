"""Sweeping our bucket by age, through the S3 API: maintenance's view of what is stored when.

`Storage` reads and writes objects by key; this lists them with their times, for the sweeps that
delete by age: direct uploads past UPLOAD_RETENTION_DAYS, and multipart uploads an archiver
started and never finished (a worker killed mid-copy leaves its parts billed in the bucket).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.resources import s3_endpoint
from infra.settings import Settings
from infra.storage import make_s3_client

DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class Unfinished:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime
    last_part: datetime | None  # the newest part's time: an upload still being written has a fresh one


class Bucket:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    @classmethod
    def of(cls, settings: Settings) -> Bucket:
        """The bucket the settings name, on a client of its own (a sweep is rare and slow)."""
        return cls(make_s3_client(settings, s3_endpoint(settings)), settings.s3_bucket)

    def objects(self, prefix: str) -> Iterator[StoredObject]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"])

    def delete(self, keys: list[str]) -> None:
        """Delete `keys`, a thousand a request; a missing key is no error (safe to repeat)."""
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start : start + DELETE_BATCH]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})

    def unfinished(self) -> Iterator[Unfinished]:
        pages = self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
        for page in pages:
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                yield Unfinished(key, upload_id, upload["Initiated"], self._last_part(key, upload_id))

    def abort(self, upload: Unfinished) -> None:
        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id)

    def _last_part(self, key: str, upload_id: str) -> datetime | None:
        pages = self._s3.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
        times = [part["LastModified"] for page in pages for part in page.get("Parts", [])]
        return max(times, default=None)
