"""A batch's zip (GET /v1/batches/{id}/archive) is streamed: its peak memory should not grow with the
number of rows. Measured here with tracemalloc over the archive's generator, for batches of stored
files of one size (random bytes: nothing compresses), against the size of one file as the baseline.
"""

from __future__ import annotations

import io
import secrets
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime

from api import archive
from domain.jobs import Job, JobKind, JobStatus, ResultFile
from infra.storage import Storage

FILE_BYTES = 4 * 1024 * 1024
ROWS = (5, 20, 50)


@dataclass(frozen=True)
class ZipRun:
    rows: int
    zip_bytes: int
    peak_bytes: int


def measure(storage: Storage) -> list[ZipRun]:
    keys = _store(storage, max(ROWS))
    return [_run(storage, keys[:rows]) for rows in ROWS]


def _store(storage: Storage, count: int) -> list[str]:
    prefix = f"bench/zips/{secrets.token_hex(4)}"
    keys = [f"{prefix}/{i}.mp4" for i in range(count)]
    for key in keys:
        storage.upload(key, io.BytesIO(secrets.token_bytes(FILE_BYTES)), content_type="video/mp4")
    return keys


def _run(storage: Storage, keys: list[str]) -> ZipRun:
    rows = [(i, _job(i, key)) for i, key in enumerate(keys)]
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in archive.zipped(storage, rows))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return ZipRun(len(keys), size, peak)


def _job(row: int, key: str) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=f"bench{row:027d}",
        user_id="bench",
        kind=JobKind.VIDEO,
        status=JobStatus.SUCCEEDED,
        input={},
        price=0,
        vendor="kie",
        model="sora-2-pro",
        deadline_at=now,
        created_at=now,
        updated_at=now,
        results=(ResultFile(key, "video/mp4", FILE_BYTES),),
    )
