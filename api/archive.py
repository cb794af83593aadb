"""A batch's results as one zip, streamed: each file goes from storage into the zip a megabyte at a
time and out to the client as it is written, so memory stays flat whatever the batch holds.

Files are stored as they are (images and videos are compressed already) and named
`{row:04d}-{kind}-{i}.{ext}`; `manifest.csv` (row, job id, status, error code, files) comes last.
"""

from __future__ import annotations

import csv
import io
import mimetypes
import zipfile
from collections.abc import Iterator, Sequence

from domain.jobs import Job, JobStatus
from infra.storage import Storage

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}


class _Pipe:
    """A write-only stream for ZipFile: what is written waits here until the generator takes it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def zipped(storage: Storage, rows: Sequence[tuple[int, Job]]) -> Iterator[bytes]:
    pipe = _Pipe()
    manifest = io.StringIO()
    lines = csv.writer(manifest)
    lines.writerow(["row", "job_id", "status", "error_code", "files"])
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for row, job in rows:
            names = []
            if job.status is JobStatus.SUCCEEDED and job.results_expired_at is None:  # retention may have run
                for i, result in enumerate(job.results):
                    name = f"{row:04d}-{job.kind}-{i}.{_extension(result.content_type, result.key)}"
                    names.append(name)
                    with archive.open(name, mode="w", force_zip64=True) as member:
                        for chunk in storage.chunks(result.key):
                            member.write(chunk)
                            if data := pipe.take():
                                yield data
                    if data := pipe.take():  # the member's header, written when it closes
                        yield data
            lines.writerow([row, job.id, job.status, job.error_code or "", " ".join(names)])
        archive.writestr("manifest.csv", manifest.getvalue())
    yield pipe.take()


def _extension(content_type: str, key: str) -> str:
    if content_type in EXTENSIONS:
        return EXTENSIONS[content_type]
    if "." in key.rsplit("/", 1)[-1]:
        return key.rsplit(".", 1)[-1]
    return (mimetypes.guess_extension(content_type) or ".bin").lstrip(".")
