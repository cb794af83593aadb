"""The generation pool: take a vendor slot, submit, record the vendor's task id, start polling.

Slots full and vendor capacity answers put the job back with a delay (never a retry spent, never a
failure). Transient vendor errors are retried inside the actor (2 s, 4 s, 8 s); what is still
failing after that, and permanent errors, fail the job and refund it. A worker that dies in
`submitting` is maintenance's case: it moves the job back to `queued`.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics
from vendors.base import VendorBusy, VendorError
from workers import kinds, runtime
from workers.broker import actor
from workers.lifecycle import claim, dispatch, finish

log = structlog.get_logger()
UPLOAD_URL_TTL_S = 86_400


@actor(queue_name="generation", max_retries=3, time_limit=180_000)
def submit_job(job_id: str) -> None:
    job = claim(job_id, "generation", S.QUEUED)
    if job is None:
        return
    rt = runtime.get()
    if rt.now() >= job.deadline_at:
        finish(job, S.QUEUED, S.TIMED_OUT, code="deadline_exceeded", message="no vendor slot before the deadline")
        return
    if not rt.slots.acquire(job.slot, job.id, limit=rt.policy.limit_for(job)):
        _requeue(job, "slots_full")
        return
    if not rt.jobs.move(job_id, S.QUEUED, S.SUBMITTING, now=rt.now()):
        rt.slots.release(job.slot, job.id)  # another worker won the compare-and-set
        return
    _submit(job)


def _submit(job: Job) -> None:
    rt = runtime.get()
    job = _with_upload_url(job)
    try:
        vendor = rt.vendor(job)
        request = kinds.request(job, rt.settings, rt.rng)
        task_id = rt.retrying(vendor.name, "submit", lambda: vendor.submit(request, idempotency_key=job.id))
    except VendorBusy as exc:  # back-pressure, not failure
        rt.slots.release(job.slot, job.id)
        if rt.jobs.move(job.id, S.SUBMITTING, S.QUEUED, now=rt.now(), detail={"reason": exc.code}):
            _requeue(job, exc.code)
        return
    except VendorError as exc:  # retries spent, permanent, or protocol drift
        rt.slots.release(job.slot, job.id)
        finish(job, S.SUBMITTING, S.FAILED, code=exc.code, message=str(exc))
        return
    if not rt.jobs.move(job.id, S.SUBMITTING, S.PROCESSING, now=rt.now(), vendor_task_id=task_id):
        log.warning("submitted_but_moved", vendor_task_id=task_id)  # maintenance took it back meanwhile
        return
    log.info("job_submitted", vendor_task_id=task_id)
    from workers import polling

    job = rt.jobs.get(job.id) or job
    dispatch(polling.poll_job, job.id, delay_ms=rt.policy.poll_delay_ms(job, rt.now()))


def _with_upload_url(job: Job) -> Job:
    """A direct upload becomes a signed URL into our storage that the vendor can fetch.

    It is written into the job's input once, so every later step (CI's deferred fetch among
    them) sees the very URL that was submitted.
    """
    key = job.input.get("upload_key")
    if not key or job.input.get("image_url"):
        return job
    rt = runtime.get()
    job_input = {**job.input, "image_url": rt.storage.signed_url(key, ttl_s=UPLOAD_URL_TTL_S)}
    rt.jobs.set_input(job.id, job_input)
    return replace(job, input=job_input)


def _requeue(job: Job, reason: str) -> None:
    rt = runtime.get()
    rt.jobs.touch(job.id, S.QUEUED, now=rt.now())  # alive: the reconciler leaves it alone
    metrics.REQUEUES.labels(job.slot, reason).inc()
    log.info("job_requeued", reason=reason)
    dispatch(submit_job, job.id, delay_ms=rt.policy.requeue_ms())
