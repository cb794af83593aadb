"""The archiving pool: copy every vendor output into our storage, then mark the job succeeded.

Each attempt writes under its own prefix, `results/{user_id}/{job_id}/{attempt}/{index}.{ext}`,
and only the attempt that wins the compare-and-set to `succeeded` publishes its keys: a re-driven
or failed attempt removes its own objects and never another's. Vendor URLs are asked for afresh
(they are short-lived) and never written down. A long copy heartbeats, so it is not re-driven.

Attempts are bounded (ARCHIVE_MAX_ATTEMPTS) and back off (RETRY_WAITS_S): any error counts, a
transient vendor answer included; a permanent vendor answer (the task failed, or expired) ends the
job at once. After the last attempt the job fails and is refunded.
"""

from __future__ import annotations

import io

import structlog

from domain import scheduling
from domain.jobs import Job, ResultFile
from domain.jobs import JobStatus as S
from infra import metrics
from infra.fetch import FetchError, fetch
from infra.jobstore import results_value
from vendors.base import VendorExpired, VendorFile, VendorRejected
from workers import kinds, messages
from workers.broker import actor
from workers.lifecycle import beating, claim, finish
from workers.runtime import Runtime

log = structlog.get_logger()


@actor(queue_name="archiving", max_retries=0, time_limit=900_000)
def archive_job(rt: Runtime, job_id: str, fence: int) -> None:
    job = claim(rt, job_id, "archiving", S.ARCHIVING, fence, archiving=True)
    if job is None or job.vendor_task_id is None:
        return
    uploaded: list[ResultFile] = []
    every = max(rt.settings.stale_archiving_s / 3, 0.05)
    try:
        with beating(every, lambda: rt.jobs.heartbeat(job.id, S.ARCHIVING, job.fence, now=rt.now())):
            _copy_all(rt, job, uploaded)
    except Exception as exc:  # any error: this attempt's objects go, then retry or give up
        rt.storage.delete([f.key for f in uploaded])
        _retry_or_fail(rt, job, exc)
        return
    if not finish(rt, job, S.ARCHIVING, S.SUCCEEDED, results=results_value(uploaded)):
        rt.storage.delete([f.key for f in uploaded])  # another attempt owns the job now
    elif rt.meter is not None:
        rt.meter.add(sum(f.size for f in uploaded))


def _copy_all(rt: Runtime, job: Job, uploaded: list[ResultFile]) -> None:
    vendor = rt.vendor(job)
    task_id = job.vendor_task_id or ""
    files = rt.retrying(vendor.name, "outputs", lambda: vendor.outputs(task_id))
    if not files:
        raise VendorRejected(job.vendor, "no_outputs", "the vendor reported success with no files")
    for index, file in enumerate(files):
        uploaded.append(_copy(rt, job, index, file))


# A vendor output we must not reach, or cannot use, will not become reachable on a later attempt
# (a 4xx may: the next attempt asks the vendor for fresh links).
NEVER_FETCHABLE = frozenset({"not_public_address", "unusable_url", "too_large"})


def _retry_or_fail(rt: Runtime, job: Job, exc: Exception) -> None:
    code = getattr(exc, "code", None) or type(exc).__name__
    permanent = isinstance(exc, VendorRejected | VendorExpired) or getattr(exc, "code", "") in NEVER_FETCHABLE
    final = permanent or job.archive_attempts >= rt.settings.archive_max_attempts
    log.warning("archive_attempt_failed", attempt=job.archive_attempts, error=code, final=final, exc_info=exc)
    if final:
        finish(rt, job, S.ARCHIVING, S.FAILED, code=f"archive_{code}", message=str(exc) or code)
        return
    waits = rt.policy.retry_waits_s
    wait = scheduling.retry_wait(min(job.archive_attempts, len(waits)), waits) if waits else 0.0
    messages.archive(job.id, job.fence, delay_ms=int((wait or 0.0) * 1000))


def _copy(rt: Runtime, job: Job, index: int, file: VendorFile) -> ResultFile:
    fetched = fetch(rt.downloads, file.url, max_bytes=rt.settings.max_download_bytes)
    with fetched.body:
        content_type = _content_type(fetched.content_type, file.content_type)
        body, size = fetched.body, fetched.size
        change = kinds.transform(job)
        if change is not None:
            data = change(fetched.body.read())
            body, size = io.BytesIO(data), len(data)
        key = f"results/{job.user_id}/{job.id}/{job.archive_attempts}/{index}.{file.ext}"
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
