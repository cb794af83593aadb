"""Moves shared by every actor: opening a run, finishing a job, timing out and cancelling vendor
work, heartbeats of long calls."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from domain.jobs import REFUNDABLE, Job, JobStatus
from domain.jobs import JobStatus as S
from domain.timings import SPANS, timings
from infra import metrics
from vendors.base import VendorError
from workers import admission, messages
from workers.runtime import Runtime

log = structlog.get_logger()


def claim(rt: Runtime, job_id: str, stage: str, status: JobStatus, fence: int, **counts: bool) -> Job | None:
    """Open an actor run: bind the log context and take the message's turn (the fence moves on).

    None means there is nothing to do: a duplicate, a message a re-drive made stale, or a job
    that moved on. Such a run changes nothing and releases nothing.
    """
    bind(job_id, stage)
    job = rt.jobs.claim(job_id, status, fence, now=rt.now(), **counts)
    if job is None:
        log.info("message_skipped", fence=fence)
        return None
    bind_job(job)
    return job


def finish(
    rt: Runtime, job: Job, expected: JobStatus, target: JobStatus, *, code: str = "", message: str = "", **changes: Any
) -> bool:
    """Move to a terminal state (fenced CAS + event); count it; send the refund when one is owed."""
    now = rt.now()
    if code:
        changes.update(error_code=code, error_message=message[:2000] or code)
    detail = {"code": code} if code else None
    if rt.jobs.move(job.id, expected, target, now=now, fence=job.fence, detail=detail, **changes) is None:
        log.info("finish_lost_race", expected=expected, target=target)
        return False
    log.info("job_finished", status=target, code=code or None)
    metrics.JOBS_FINISHED.labels(job.kind, target).inc()
    metrics.JOB_DURATION.labels(job.kind, target).observe((now - job.created_at).total_seconds())
    observe_stages(rt, job)
    if target in REFUNDABLE:
        metrics.JOB_FAILURES.labels(job.kind, job.vendor, code or target).inc()
        messages.refund(job.id)
    return True


def observe_stages(rt: Runtime, job: Job) -> None:
    """An ended job's time in each stage (from its stored moves) and the polls it took."""
    spent = timings(rt.jobs.moves([job.id])[job.id], now=rt.now())
    for stage in SPANS:
        metrics.STAGE_LATENCY.labels(job.kind, job.vendor, stage).observe(getattr(spent, stage))
    metrics.POLLS_PER_JOB.labels(job.kind).observe(job.polls)


def finish_holding(rt: Runtime, job: Job, expected: JobStatus, target: JobStatus, **kwargs: Any) -> bool:
    """Finish a job that holds a vendor slot (`submitting`, `processing`): the winner gives it back
    and the room admits its next job at once."""
    if not finish(rt, job, expected, target, **kwargs):
        return False
    admission.release(rt, job)
    return True


def time_out(rt: Runtime, job: Job) -> None:
    """Past its deadline: `timed_out` + refund, and the vendor task cancelled where it can be."""
    message = "the vendor did not finish in time"
    if finish_holding(rt, job, S.PROCESSING, S.TIMED_OUT, code="deadline_exceeded", message=message):
        cancel_at_vendor(rt, job, job.vendor_task_id or "")


def cancel_at_vendor(rt: Runtime, job: Job, task_id: str) -> None:
    """Vendor work genq no longer wants is cancelled where the vendor documents a cancel; where it
    does not, the task stays on record (`vendor_attempts`) and is counted."""
    vendor = rt.vendors.get(job.vendor)
    if vendor is None or not vendor.can_cancel:
        metrics.VENDOR_CANCELS.labels(job.vendor, "not_supported").inc()
        return
    try:
        rt.retrying(vendor.name, "cancel", lambda: vendor.cancel(task_id))
    except VendorError as exc:
        metrics.VENDOR_CANCELS.labels(job.vendor, "failed").inc()
        log.warning("vendor_cancel_failed", vendor_task_id=task_id, error=exc.code)
        return
    rt.jobs.cancelled_at_vendor(job.id, job.attempt, now=rt.now())
    metrics.VENDOR_CANCELS.labels(job.vendor, "cancelled").inc()
    log.info("vendor_task_cancelled", vendor_task_id=task_id)


@contextmanager
def beating(every_s: float, beat: Callable[[], object]) -> Iterator[None]:
    """Call `beat` every `every_s` seconds from a side thread while the block runs (a lease or a
    job kept alive through a long vendor call or copy)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                beat()
            except Exception:  # a missed beat is survivable; the next one may pass
                log.warning("heartbeat_failed", exc_info=True)

    thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def bind(job_id: str, stage: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, stage=stage)


def bind_job(job: Job) -> None:
    structlog.contextvars.bind_contextvars(user_id=job.user_id, vendor=job.vendor, kind=job.kind)
