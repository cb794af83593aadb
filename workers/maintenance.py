"""The maintenance pool: the reconciler that makes lost messages harmless.

Redis may lose messages; the database may not. Every `reconcile_interval_s`, each non-terminal
job whose last progress is older than its state's bound gets the message its state's actor needs,
a job left in `submitting` by a dead worker goes back to `queued`, and a refundable job without
its refund gets one. Actors are idempotent, so a re-send that races a live message is harmless.
A Redis lock lets only one maintenance process reconcile per interval.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dramatiq
import redis
import structlog

from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics
from workers import accounts, archiving, generation, moderation, polling, refunds, runtime
from workers.lifecycle import dispatch

log = structlog.get_logger()
LOCK_KEY = "genq:maintenance:reconcile"
SWEEP_KEY = "genq:maintenance:membership-sweep"
SWEEP_EVERY_S = 86_400

_REDRIVE: Mapping[S, dramatiq.Actor[Any, Any]] = {
    S.PENDING_AUDIT: moderation.check_job,
    S.QUEUED: generation.submit_job,
    S.PROCESSING: polling.poll_job,
    S.ARCHIVING: archiving.archive_job,
}


def bounds(rt: runtime.Runtime) -> dict[S, float]:
    s = rt.settings
    return {
        S.PENDING_AUDIT: s.audit_pull_after_s,
        S.QUEUED: s.stale_queued_s,
        S.SUBMITTING: s.stale_submitting_s,
        S.PROCESSING: s.stale_processing_s,
        S.ARCHIVING: s.stale_archiving_s,
    }


def reconcile() -> int:
    """One pass; returns how many messages it sent."""
    rt = runtime.get()
    now = rt.now()
    sent = 0
    for job in rt.jobs.stale(bounds(rt), now=now):
        sent += _redrive(job)
    for job_id in rt.jobs.unrefunded(older_than=now - timedelta(seconds=rt.settings.stale_refund_s)):
        sent += dispatch(refunds.refund_job, job_id)
        metrics.RECONCILED.labels("refund").inc()
    if sent:
        log.info("reconciled", sent=sent)
    return sent


def _redrive(job: Job) -> int:
    rt = runtime.get()
    status = job.status
    if status is S.SUBMITTING:  # its worker died mid-submit: take it back and submit again
        if not rt.jobs.move(job.id, S.SUBMITTING, S.QUEUED, now=rt.now(), detail={"reason": "reconciled"}):
            return 0
        status = S.QUEUED
    elif not rt.jobs.touch(job.id, status, now=rt.now()):
        return 0  # it moved on meanwhile
    metrics.RECONCILED.labels(status).inc()
    log.info("job_redriven", job_id=job.id, status=status)
    return int(dispatch(_REDRIVE[status], job.id))


def run_periodically(stop: threading.Event, client: redis.Redis) -> None:
    """The maintenance loop: reconcile every interval, and sweep lapsed memberships daily (SPEC §4,
    §10), each one process at a time cluster-wide."""
    interval = runtime.get().settings.reconcile_interval_s
    while not stop.wait(interval):
        try:
            if client.set(LOCK_KEY, "1", nx=True, px=max(int(interval * 1000) - 50, 1)):
                reconcile()
            if client.set(SWEEP_KEY, "1", nx=True, ex=SWEEP_EVERY_S):
                accounts.sweep_memberships()
        except Exception:  # keep the loop alive through Redis or database blips
            log.exception("maintenance_failed")
