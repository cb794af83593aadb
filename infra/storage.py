"""Object storage through the S3 API (Tencent COS, MinIO, AWS S3, or the embedded server).

Only storage keys are ever stored; clients get short-lived signed URLs (signature v4).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any, Literal

import boto3
import redis
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.settings import Settings


def make_s3_client(settings: Settings, endpoint_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key.reveal(),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": _addressing(settings.s3_addressing_style)},
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def _addressing(style: str) -> Literal["auto", "virtual", "path"]:
    """COS wants virtual-hosted addressing; local servers (moto, MinIO) path-style."""
    if style == "virtual":
        return "virtual"
    if style == "path":
        return "path"
    return "auto"


class StorageMeter:
    """The bytes of published results, kept in Redis (one counter for every process): added when a
    job's results are published, so /metrics can compare them with STORAGE_QUOTA_BYTES."""

    KEY = "genq:storage:result-bytes"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def add(self, size: int) -> None:
        self._redis.incrby(self.KEY, size)

    def remove(self, size: int) -> None:
        self._redis.decrby(self.KEY, size)

    def held(self) -> int:
        value = self._redis.get(self.KEY)
        return int(value) if value is not None else 0


class Storage:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._s3.create_bucket(Bucket=self.bucket)

    def allow_browser_uploads(self, origins: list[str]) -> None:
        """Let pages from `origins` POST direct uploads and read the answer (CORS): the workbench
        uploads with a progress bar, which makes the browser ask first (a preflight)."""
        rule = {
            "AllowedMethods": ["POST", "GET"],
            "AllowedOrigins": origins,
            "AllowedHeaders": ["*"],
            "MaxAgeSeconds": 3600,
        }
        self._s3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [rule]})

    def upload(self, key: str, body: IO[bytes], *, content_type: str) -> None:
        """Stream `body` up (multipart above boto3's threshold); memory stays bounded."""
        self._s3.upload_fileobj(body, self.bucket, key, ExtraArgs={"ContentType": content_type})

    def size(self, key: str) -> int:
        return int(self._s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def delete(self, keys: list[str]) -> None:
        if keys:
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})

    def keys(self, prefix: str) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def chunks(self, key: str, *, size: int = 1024 * 1024) -> Iterator[bytes]:
        """The object, streamed `size` bytes at a time: memory stays bounded whatever its size."""
        body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size=size)
        finally:
            body.close()

    def read(self, key: str) -> bytes:
        return bytes(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def signed_url(self, key: str, *, ttl_s: int) -> str:
        return str(
            self._s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s)
        )

    def presigned_post(self, key: str, *, prefix: str, content_type: str, max_bytes: int, ttl_s: int) -> dict[str, Any]:
        """A browser upload grant: the signed policy pins the key's prefix, the type and the size cap."""
        grant = self._s3.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                ["starts-with", "$key", prefix],
                {"Content-Type": content_type},
                ["content-length-range", 1, max_bytes],
            ],
            ExpiresIn=ttl_s,
        )
        return dict(grant)

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    def ping(self) -> bool:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            return False
        return True
