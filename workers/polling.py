"""The polling pool: ask the vendor how a `processing` job is doing, at a growing interval.

Only `processing` jobs are polled; a terminal job never is. Every poll renews the job's slot
lease. The deadline and the poll cap end the job `timed_out`.
"""

from __future__ import annotations

import structlog

from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics
from vendors.base import Done, Failed, Running, VendorError, VendorExpired, VendorUnavailable
from workers import runtime
from workers.broker import actor
from workers.lifecycle import claim, dispatch, leave_processing

log = structlog.get_logger()


@actor(queue_name="polling", max_retries=3, time_limit=120_000)
def poll_job(job_id: str) -> None:
    job = claim(job_id, "polling", S.PROCESSING)
    if job is None or job.vendor_task_id is None:
        return
    rt = runtime.get()
    if rt.now() >= job.deadline_at or job.polls >= rt.policy.schedule_for(job).max_polls:
        _time_out(job)
        return
    rt.slots.renew(job.slot, job.id)
    vendor = rt.vendor(job)
    task_id = job.vendor_task_id
    metrics.POLLS.labels(job.kind).inc()
    try:
        outcome = rt.retrying(vendor.name, "poll", lambda: vendor.poll(task_id))
    except VendorUnavailable:  # still unreachable after retries: try again later, the deadline bounds it
        _poll_later(job)
        return
    except VendorExpired as exc:
        leave_processing(job, S.FAILED, code="vendor_job_expired", message=str(exc))
        return
    except VendorError as exc:
        leave_processing(job, S.FAILED, code=exc.code, message=str(exc))
        return
    match outcome:
        case Running():
            _poll_later(job)
        case Done():
            if leave_processing(job, S.ARCHIVING):
                from workers import archiving

                dispatch(archiving.archive_job, job.id)
        case Failed(code=code, message=message):
            leave_processing(job, S.FAILED, code=code, message=message)


def _poll_later(job: Job) -> None:
    rt = runtime.get()
    rt.jobs.touch(job.id, S.PROCESSING, now=rt.now(), polled=True)
    dispatch(poll_job, job.id, delay_ms=rt.policy.poll_delay_ms(job, rt.now()))


def _time_out(job: Job) -> None:
    rt = runtime.get()
    if leave_processing(job, S.TIMED_OUT, code="deadline_exceeded", message="the vendor did not finish in time"):
        try:
            rt.vendor(job).cancel(job.vendor_task_id or "")
        except VendorError as exc:  # best effort: the job is already over on our side
            log.info("vendor_cancel_failed", error=exc.code)
