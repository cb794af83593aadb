"""The moderation pool. For now every job passes straight through: AUDIT_ENABLED is off by
default and no platform adapter exists yet; a job only arrives here in `pending_audit`."""

from __future__ import annotations

import structlog

from domain.jobs import JobStatus as S
from workers import runtime
from workers.broker import actor
from workers.lifecycle import claim, dispatch

log = structlog.get_logger()


@actor(queue_name="moderation", max_retries=3, time_limit=60_000)
def check_job(job_id: str) -> None:
    if claim(job_id, "moderation", S.PENDING_AUDIT) is None:
        return
    rt = runtime.get()
    if rt.jobs.move(job_id, S.PENDING_AUDIT, S.QUEUED, now=rt.now(), detail={"verdict": "pass-through"}):
        from workers import generation

        dispatch(generation.submit_job, job_id)
