"""The generation pool: rooms admit jobs, and an admitted job's attempt is submitted to the vendor.

`enqueue_job` puts a `queued` job in its room and admits; `admit_room` runs a room's admission
(after a back-off or a vendor pause); `submit_job` calls the vendor for an admitted job.

A submit is written down before the call (`vendor_attempts`) and its lease heartbeats while the
call runs. Outcomes: accepted -> `processing` with the task id, recorded with the attempt in one
transaction (a job that moved on meanwhile gets its task cancelled where the vendor can); "too
busy" -> back to the room, which pauses (back-pressure, no attempt spent); transient errors are
retried (2 s, 4 s, 8 s) while the slot is held, and what is left fails the job; an answer lost
after sending is an unknown outcome: counted as a possible orphan and backed off; permanent
errors fail the job. Every failure refunds.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from domain import scheduling
from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics
from infra.rooms import Renewal
from vendors.base import VendorBusy, VendorError, VendorOutcomeUnknown, VendorUnavailable
from workers import admission, kinds, messages
from workers.broker import actor
from workers.lifecycle import beating, bind, cancel_at_vendor, claim, finish_holding
from workers.runtime import Runtime

log = structlog.get_logger()
UPLOAD_URL_TTL_S = 86_400


@actor(queue_name="generation", max_retries=3, time_limit=60_000)
def enqueue_job(rt: Runtime, job_id: str, fence: int) -> None:
    bind(job_id, "admission")
    job = rt.jobs.get(job_id)
    if job is None or job.status is not S.QUEUED or job.fence != fence:
        log.info("message_skipped", fence=fence)
        return
    admission.enqueue(rt, job)


@actor(queue_name="generation", max_retries=3, time_limit=60_000)
def admit_room(rt: Runtime, room: str) -> None:
    admission.admit(rt, room)


@actor(queue_name="generation", max_retries=3, time_limit=300_000)
def submit_job(rt: Runtime, job_id: str, fence: int) -> None:
    job = claim(rt, job_id, "generation", S.SUBMITTING, fence)
    if job is None:
        return
    limit = rt.policy.model_limit(job.slot)
    if rt.rooms.renew(job.slot, [job.holder], limit=limit) == [Renewal.LOST]:
        metrics.LEASES_LOST.labels(job.slot).inc()
        admission.back_to_queue(rt, job, reason="lease_lost")
        return
    if not rt.jobs.open_attempt(job, now=rt.now()):  # the fence makes this unreachable; never call twice
        log.error("attempt_already_made", attempt=job.attempt)
        return
    every = rt.rooms.ttl_ms / 3000
    with beating(every, lambda: rt.rooms.renew(job.slot, [job.holder], limit=limit)):
        _submit(rt, job)
    _let_go_unless_running(rt, job)


def _let_go_unless_running(rt: Runtime, job: Job) -> None:
    """Whatever happened meanwhile (a cancel, a take-back), a slot this attempt still holds for a
    job the vendor is not running for it goes back, and the room admits its next job."""
    now = rt.jobs.get(job.id)
    if now is not None and now.status is S.PROCESSING and now.attempt == job.attempt:
        return
    if rt.rooms.release(job.slot, job.holder):
        admission.released(rt, job)


def _submit(rt: Runtime, job: Job) -> None:
    try:
        vendor = rt.vendor(job)
        job = _with_upload_url(rt, job)
        request = kinds.request(job, rt.settings, rt.rng)
        task_id = rt.retrying(vendor.name, "submit", lambda: vendor.submit(request, idempotency_key=job.id))
    except VendorBusy as exc:  # back-pressure: the room waits for the vendor, the job keeps its place
        rt.jobs.end_attempt(job, "busy", now=rt.now())
        pause_ms = exc.retry_after_ms or int(rt.policy.current.vendor_busy_pause_s * 1000)
        admission.back_to_queue(rt, job, reason=exc.code, pause_ms=pause_ms)
        return
    except VendorOutcomeUnknown as exc:  # the vendor may have made a task we will never hear of
        rt.jobs.end_attempt(job, "unknown", now=rt.now())
        metrics.UNKNOWN_OUTCOMES.labels(job.vendor).inc()
        _back_off_or_fail(rt, job, exc)
        return
    except VendorError as exc:  # retries spent, permanent, or protocol drift
        rt.jobs.end_attempt(job, "failed", now=rt.now())
        if isinstance(exc, VendorUnavailable):
            admission.record_outcome(rt, job.slot, ok=False)
        finish_holding(rt, job, S.SUBMITTING, S.FAILED, code=exc.code, message=str(exc))
        return
    _accepted(rt, job, task_id)


def _accepted(rt: Runtime, job: Job, task_id: str) -> None:
    fence = rt.jobs.accept(job, task_id, now=rt.now())
    if fence is None:  # cancelled, or taken back: the task is not wanted
        log.warning("submitted_but_moved", vendor_task_id=task_id)
        cancel_at_vendor(rt, job, task_id)
        return
    log.info("job_submitted", vendor_task_id=task_id, attempt=job.attempt)
    job = replace(job, status=S.PROCESSING, fence=fence, processing_at=rt.now(), vendor_task_id=task_id)
    messages.poll(job.id, fence, delay_ms=rt.policy.poll_delay_ms(job, rt.now()))


def _back_off_or_fail(rt: Runtime, job: Job, exc: VendorError) -> None:
    wait = scheduling.retry_wait(job.submit_failures + 1, rt.policy.retry_waits_s)
    if wait is None:
        finish_holding(rt, job, S.SUBMITTING, S.FAILED, code=exc.code, message=str(exc))
        return
    admission.back_to_queue(rt, job, reason=exc.code, backoff_s=wait, failure=True)


def _with_upload_url(rt: Runtime, job: Job) -> Job:
    """A direct upload becomes a signed URL into our storage that the vendor can fetch.

    It is written into the job's input once, so every later step (CI's deferred fetch among
    them) sees the very URL that was submitted.
    """
    key = job.input.get("upload_key")
    if not key or job.input.get("image_url"):
        return job
    job_input = {**job.input, "image_url": rt.storage.signed_url(key, ttl_s=UPLOAD_URL_TTL_S)}
    rt.jobs.set_input(job.id, job_input)
    return replace(job, input=job_input)
