"""The archiving pool: copy every vendor output into our storage, then mark the job succeeded.

Keys are `results/{user_id}/{job_id}/{index}.{ext}`, so a re-run after a crash overwrites the same
objects instead of leaving strays. The job stores storage keys only; vendor URLs are asked for
afresh here (they are short-lived) and never written down. A failed archive removes what it put.
"""

from __future__ import annotations

import io

import structlog

from domain.jobs import Job, ResultFile
from domain.jobs import JobStatus as S
from infra import metrics
from infra.fetch import FetchError, fetch
from infra.jobstore import results_value
from vendors.base import VendorError, VendorFile
from workers import kinds, runtime
from workers.broker import actor
from workers.lifecycle import claim, finish

log = structlog.get_logger()


@actor(queue_name="archiving", max_retries=3, time_limit=600_000)
def archive_job(job_id: str) -> None:
    job = claim(job_id, "archiving", S.ARCHIVING)
    if job is None or job.vendor_task_id is None:
        return
    rt = runtime.get()
    vendor = rt.vendor(job)
    task_id = job.vendor_task_id
    uploaded: list[ResultFile] = []
    try:
        files = rt.retrying(vendor.name, "outputs", lambda: vendor.outputs(task_id))
        if not files:
            raise FetchError("no_outputs", "the vendor reported success with no files")
        for index, file in enumerate(files):
            uploaded.append(_copy(job, index, file))
    except (VendorError, FetchError) as exc:
        rt.storage.delete([f.key for f in uploaded])
        finish(job, S.ARCHIVING, S.FAILED, code=f"archive_{exc.code}", message=str(exc))
        return
    finish(job, S.ARCHIVING, S.SUCCEEDED, results=results_value(uploaded))


def _copy(job: Job, index: int, file: VendorFile) -> ResultFile:
    rt = runtime.get()
    fetched = fetch(rt.downloads, file.url, max_bytes=rt.settings.max_download_bytes)
    with fetched.body:
        content_type = _content_type(fetched.content_type, file.content_type)
        body, size = fetched.body, fetched.size
        change = kinds.transform(job)
        if change is not None:
            data = change(fetched.body.read())
            body, size = io.BytesIO(data), len(data)
        key = f"results/{job.user_id}/{job.id}/{index}.{file.ext}"
        rt.storage.upload(key, body, content_type=content_type)
    metrics.ARCHIVED_BYTES.labels(job.kind).inc(size)
    return ResultFile(key, content_type, size)


def _content_type(served: str, declared: str) -> str:
    """What the server says, unless it says nothing useful; a different kind of file is refused."""
    if served in ("", "application/octet-stream", "binary/octet-stream"):
        return declared
    if served.split("/", maxsplit=1)[0] != declared.split("/", maxsplit=1)[0]:
        raise FetchError("content_type", f"expected {declared}, got {served}")
    return served
