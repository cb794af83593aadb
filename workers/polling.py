"""The polling pool: ask the vendor how a `processing` job is doing, at a growing interval.

Each poll is one fenced message: it bumps the fence, so a duplicate (or a message from before a
re-drive) does nothing and one chain of polls lives per job. Every poll renews the attempt's slot
lease (maintenance renews it too, whatever the interval). The deadline (from admission) and the
poll cap end the job `timed_out`, and its vendor task is cancelled where the vendor can.
"""

from __future__ import annotations

import structlog

from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics
from vendors.base import Done, Failed, Running, VendorBusy, VendorError, VendorExpired, VendorUnavailable
from workers import admission, messages
from workers.broker import actor
from workers.lifecycle import bind, cancel_at_vendor, claim, finish_holding, time_out
from workers.runtime import Runtime

log = structlog.get_logger()


@actor(queue_name="polling", max_retries=3, time_limit=120_000)
def poll_job(rt: Runtime, job_id: str, fence: int) -> None:
    job = claim(rt, job_id, "polling", S.PROCESSING, fence, polled=True)
    if job is None or job.vendor_task_id is None:
        return
    if rt.now() >= job.deadline_at or job.polls > rt.policy.schedule_for(job).max_polls:
        time_out(rt, job)
        return
    rt.rooms.renew(job.slot, [job.holder], limit=rt.policy.model_limit(job.slot))
    vendor = rt.vendor(job)
    task_id = job.vendor_task_id
    metrics.POLLS.labels(job.kind).inc()
    try:
        outcome = rt.retrying(vendor.name, "poll", lambda: vendor.poll(task_id))
    except VendorBusy as exc:  # a rate limit: back-pressure, ask again when the vendor says
        _poll_later(rt, job, at_least_ms=exc.retry_after_ms or 0)
        return
    except VendorUnavailable:  # still unreachable after retries: try again later, the deadline bounds it
        _poll_later(rt, job)
        return
    except VendorExpired as exc:
        _failed(rt, job, "vendor_job_expired", str(exc))
        return
    except VendorError as exc:
        _failed(rt, job, exc.code, str(exc))
        return
    match outcome:
        case Running():
            _poll_later(rt, job)
        case Done():
            _done(rt, job)
        case Failed(code=code, message=message):
            _failed(rt, job, code, message)


@actor(queue_name="polling", max_retries=3, time_limit=120_000)
def cancel_task(rt: Runtime, job_id: str) -> None:
    """Its owner cancelled a job the vendor was running: cancel the vendor's task where the vendor
    can, and give the slot back. Safe to repeat: a second cancel and a second release change nothing."""
    bind(job_id, "polling")
    job = rt.jobs.get(job_id)
    if job is None or job.status is not S.CANCELLED or job.vendor_task_id is None:
        return
    cancel_at_vendor(rt, job, job.vendor_task_id)
    admission.release(rt, job)


def _poll_later(rt: Runtime, job: Job, *, at_least_ms: int = 0) -> None:
    messages.poll(job.id, job.fence, delay_ms=max(rt.policy.poll_delay_ms(job, rt.now()), at_least_ms))


def _done(rt: Runtime, job: Job) -> None:
    fence = rt.jobs.move(job.id, S.PROCESSING, S.ARCHIVING, now=rt.now(), fence=job.fence)
    if fence is None:
        return
    admission.release(rt, job)  # first: the next job's admission does not wait behind archiving
    admission.record_outcome(rt, job.slot, ok=True)
    messages.archive(job.id, fence)


def _failed(rt: Runtime, job: Job, code: str, message: str) -> None:
    if finish_holding(rt, job, S.PROCESSING, S.FAILED, code=code, message=message):
        admission.record_outcome(rt, job.slot, ok=False)
