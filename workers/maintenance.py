"""The maintenance pool: the reconciler that makes lost messages and dead workers harmless.

Redis may lose messages and rooms; the database may not. Every `reconcile_interval_s`, one
maintenance process (a Redis lock) makes one pass:

1. rebuilds any room Redis lost, from the database (admission does too, before it admits), and
   closes ended degradation windows (a recovery is announced even while nothing runs);
2. renews the slot leases of every job the vendor is running, whatever its poll interval;
3. ends every job past its state's deadline (moderation, the wait in `queued`, the run);
4. takes back `submitting` jobs whose submitter's lease lapsed (a dead worker): an attempt whose
   call had started is counted as an unknown outcome, and the job waits for its next attempt;
5. re-drives jobs idle in their state past its bound by bumping the fence and sending the one
   message that state's actor needs (the old chain, if alive, is now stale), and puts `queued`
   jobs the rooms lost back in them;
6. admits in every room (the fallback: admission normally happens at each release), and re-sends
   lost refunds;
7. re-drives webhook deliveries overdue by WEBHOOK_GRACE_S (a lost message, a dead webhooks worker).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta

import redis
import structlog

from domain import scheduling
from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics
from infra.accounts import record_ledger_check
from infra.rooms import Renewal
from workers import accounts, admission, messages
from workers.lifecycle import finish, finish_holding, time_out
from workers.runtime import Runtime, current

log = structlog.get_logger()
LOCK_KEY = "genq:maintenance:reconcile"
SWEEP_KEY = "genq:maintenance:membership-sweep"
SWEEP_EVERY_S = 86_400
LEDGER_KEY = "genq:maintenance:ledger-check"  # the lock of the daily balance = ledger check
RETENTION_KEY = "genq:maintenance:retention"
WEBHOOK_GRACE_S = 30.0  # a delivery's own message normally runs at its due time: leave it that long


def reconcile(rt: Runtime) -> int:
    """One pass; returns how many jobs it acted on."""
    for room in rt.policy.rooms():
        admission.rebuild_if_lost(rt, room)
        admission.refresh_health(rt, room)
    renew_running(rt)
    acted = end_overdue(rt) + take_back(rt) + redrive(rt)
    for room in rt.policy.rooms():
        acted += admission.admit(rt, room)
    now = rt.now()
    for job_id in rt.jobs.unrefunded(older_than=now - timedelta(seconds=rt.settings.stale_refund_s)):
        acted += messages.refund(job_id)
        metrics.RECONCILED.labels("refund").inc()
    if acted:
        log.info("reconciled", acted=acted)
    return acted


def renew_running(rt: Runtime) -> None:
    by_room: dict[str, list[Job]] = defaultdict(list)
    for job in rt.jobs.in_state(S.PROCESSING):
        by_room[job.slot].append(job)
    for room, jobs in by_room.items():
        answers = rt.rooms.renew(room, [job.holder for job in jobs], limit=rt.policy.model_limit(room))
        for job, answer in zip(jobs, answers, strict=True):
            if answer is Renewal.LOST:
                metrics.LEASES_LOST.labels(room).inc()
                log.warning("lease_lost", job_id=job.id, room=room)


def end_overdue(rt: Runtime) -> int:
    ended = 0
    for job in rt.jobs.past_deadline((S.PENDING_AUDIT, S.QUEUED, S.PROCESSING), now=rt.now()):
        if job.status is S.PENDING_AUDIT:
            message = "moderation gave no verdict in time"
            ended += finish(rt, job, S.PENDING_AUDIT, S.FAILED, code="moderation_timeout", message=message)
        elif job.status is S.QUEUED:
            message = "no vendor slot within the maximum wait"
            if finish(rt, job, S.QUEUED, S.TIMED_OUT, code="queue_timeout", message=message):
                rt.rooms.remove(job.slot, job.id)
                ended += 1
        else:
            time_out(rt, job)
            ended += 1
    return ended


def take_back(rt: Runtime) -> int:
    """`submitting` jobs whose lease lapsed: their submitter is gone (it heartbeats while alive).

    A call that had started is an unknown outcome, handled like a lost answer: it spends one of the
    job's retries and the job backs off, or fails once they are spent (a job whose submitter dies
    in every call stops there, instead of starting vendor tasks for ever).
    """
    taken = 0
    for job in rt.jobs.in_state(S.SUBMITTING):
        if rt.rooms.held(job.slot, job.holder) or not rt.rooms.ready(job.slot):
            continue
        reason, wait = "lease_lapsed", None
        if rt.jobs.end_attempt(job, "unknown", now=rt.now()):  # the call had started: maybe a task
            reason = "outcome_unknown"
            metrics.UNKNOWN_OUTCOMES.labels(job.vendor).inc()
            log.warning("submit_outcome_unknown", job_id=job.id, attempt=job.attempt)
            wait = scheduling.retry_wait(job.submit_failures + 1, rt.policy.retry_waits_s)
            if wait is None:
                message = "the submitter died during the vendor call, and the job's retries are spent"
                taken += finish_holding(rt, job, S.SUBMITTING, S.FAILED, code=reason, message=message)
                continue
        if admission.back_to_queue(rt, job, reason=reason, backoff_s=wait or 0.0, failure=wait is not None):
            metrics.RECONCILED.labels(S.SUBMITTING).inc()
            taken += 1
    return taken


def redrive(rt: Runtime) -> int:
    s, now = rt.settings, rt.now()
    bounds = {
        S.PENDING_AUDIT: s.audit_pull_after_s,
        S.PROCESSING: s.stale_processing_s,
        S.ARCHIVING: s.stale_archiving_s,
    }
    sent = sum(redrive_job(rt, job) for job in rt.jobs.stale(bounds, now=now))
    return sent + _requeue_lost(rt) + redrive_webhooks(rt)


def redrive_webhooks(rt: Runtime) -> int:
    """Deliveries whose try is overdue get a new fence (their old message, if it ever runs, is
    stale) and a new message."""
    sent = 0
    for delivery in rt.webhooks.overdue(now=rt.now() - timedelta(seconds=WEBHOOK_GRACE_S)):
        fence = rt.webhooks.redrive(delivery)
        if fence is not None and messages.webhook(delivery.id, fence):
            metrics.RECONCILED.labels("webhook").inc()
            sent += 1
    return sent


def redrive_job(rt: Runtime, job: Job) -> bool:
    """Bump the fence (any message already out for the job is stale from here) and send the one
    message its state's actor needs."""
    fresh = rt.jobs.claim(job.id, job.status, job.fence, now=rt.now())
    if fresh is None:
        return False  # it moved on meanwhile
    send = {S.PENDING_AUDIT: messages.check, S.PROCESSING: messages.poll, S.ARCHIVING: messages.archive}
    metrics.RECONCILED.labels(job.status).inc()
    log.info("job_redriven", job_id=job.id, status=job.status)
    return send[job.status](job.id, fresh.fence)


def _requeue_lost(rt: Runtime) -> int:
    """`queued` jobs idle past the bound that their room does not hold (lost with Redis, or between
    a take and its admission) go back in."""
    stale = rt.jobs.stale({S.QUEUED: rt.settings.stale_queued_s}, now=rt.now(), limit=5000)
    paused = rt.jobs.in_paused_batches(job.id for job in stale)  # they wait outside their rooms
    stale = [job for job in stale if job.id not in paused]
    by_room: dict[str, list[Job]] = defaultdict(list)
    for job in stale:
        by_room[job.slot].append(job)
    put = 0
    for room, jobs in by_room.items():
        if not rt.rooms.ready(room):
            continue
        for job, held in zip(jobs, rt.rooms.waiting(room, [j.id for j in jobs]), strict=True):
            if not held:
                rt.rooms.enqueue(room, admission.entry(rt, job))
                metrics.RECONCILED.labels(S.QUEUED).inc()
                put += 1
    return put


def check_ledger(rt: Runtime, client: redis.Redis) -> int:
    """The daily balance = ledger check (seed 000): every mismatch is logged, and the count is kept
    in Redis for /metrics (`genq_ledger_mismatches`, alerted on) whichever process answers a scrape."""
    found = rt.accounts.ledger_mismatches()
    for user_id, balance, ledger in found:
        log.error("ledger_mismatch", user_id=user_id, balance=balance, ledger=ledger)
    record_ledger_check(client, mismatches=len(found), at=rt.now())
    return len(found)


def expire_results(rt: Runtime) -> int:
    """Retention (SPEC §10): a succeeded job's stored files go RESULT_RETENTION_DAYS after it
    ended; the job keeps its row and answers when they expired. How many jobs' files went."""
    days = rt.policy.current.result_retention_days
    if days <= 0:
        return 0
    expired = 0
    for job in rt.jobs.results_due(finished_before=rt.now() - timedelta(days=days)):
        rt.storage.delete([f.key for f in job.results])  # deleting a missing key is no error: safe to repeat
        if rt.jobs.expire_results(job.id, now=rt.now()):
            size = sum(f.size for f in job.results)
            if rt.meter is not None:
                rt.meter.remove(size)
            metrics.RETENTION_DELETED.labels("jobs").inc()
            metrics.RETENTION_DELETED.labels("bytes").inc(size)
            expired += 1
    if expired:
        log.info("results_expired", jobs=expired, days=days)
    return expired


def run_periodically(stop: threading.Event, client: redis.Redis) -> None:
    """The maintenance loop: reconcile every interval, and sweep lapsed memberships daily (SPEC §4,
    §10), each one process at a time cluster-wide."""
    rt = current()
    interval = rt.settings.reconcile_interval_s
    while not stop.wait(interval):
        try:
            if client.set(LOCK_KEY, "1", nx=True, px=max(int(interval * 1000) - 50, 1)):
                reconcile(rt)
            if client.set(SWEEP_KEY, "1", nx=True, ex=SWEEP_EVERY_S):
                accounts.sweep_memberships(rt)
            if client.set(LEDGER_KEY, "1", nx=True, ex=SWEEP_EVERY_S):
                check_ledger(rt, client)
            if client.set(RETENTION_KEY, "1", nx=True, ex=SWEEP_EVERY_S):
                expire_results(rt)
        except Exception:  # keep the loop alive through Redis or database blips
            log.exception("maintenance_failed")
