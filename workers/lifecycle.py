"""Moves shared by every actor: finishing a job, sending a message that may be lost, requeueing."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

from domain.jobs import REFUNDABLE, Job, JobStatus
from infra import metrics
from workers import runtime

log = structlog.get_logger()


def dispatch(actor: dramatiq.Actor[Any, Any], *args: Any, delay_ms: int | None = None) -> bool:
    """Send after commit. A lost or failed send is not fatal: maintenance re-drives stale jobs."""
    try:
        actor.send_with_options(args=args, delay=delay_ms)
    except Exception as exc:  # any broker failure means the same: the reconciler's turn
        log.warning("enqueue_failed", actor=actor.actor_name, args=args[:2], error=repr(exc))
        return False
    return True


def finish(
    job: Job, expected: JobStatus, target: JobStatus, *, code: str = "", message: str = "", **changes: Any
) -> bool:
    """Move to a terminal state (CAS + event); count it; send the refund when one is owed."""
    rt = runtime.get()
    now = rt.now()
    if code:
        changes.update(error_code=code, error_message=message[:2000] or code)
    if not rt.jobs.move(job.id, expected, target, now=now, detail={"code": code} if code else None, **changes):
        log.info("finish_lost_race", expected=expected, target=target)
        return False
    log.info("job_finished", status=target, code=code or None)
    metrics.JOBS_FINISHED.labels(job.kind, target).inc()
    metrics.JOB_DURATION.labels(job.kind, target).observe((now - job.created_at).total_seconds())
    if target in REFUNDABLE:
        from workers import refunds

        dispatch(refunds.refund_job, job.id)
    return True


def leave_processing(job: Job, target: JobStatus, **kwargs: Any) -> bool:
    """Move out of `processing` and give the vendor slot back (only the winner of the CAS does)."""
    rt = runtime.get()
    if target in REFUNDABLE or target is JobStatus.SUCCEEDED:
        moved = finish(job, JobStatus.PROCESSING, target, **kwargs)
    else:
        moved = rt.jobs.move(job.id, JobStatus.PROCESSING, target, now=rt.now())
    if moved:
        rt.slots.release(job.slot, job.id)
    return moved


def claim(job_id: str, stage: str, expected: JobStatus) -> Job | None:
    """Start an actor run: bind the log context and load the job, if it is still `expected`.

    None means there is nothing to do: the message was redelivered, raced, or the job moved on.
    """
    bind(job_id, stage)
    job = runtime.get().jobs.get(job_id)
    if job is None or job.status is not expected:
        log.info("message_skipped", status=job and job.status)
        return None
    bind_job(job)
    return job


def bind(job_id: str, stage: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, stage=stage)


def bind_job(job: Job) -> None:
    structlog.contextvars.bind_contextvars(user_id=job.user_id, vendor=job.vendor, kind=job.kind)
