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

Beside the pass, `run_periodically` runs the scheduled tasks of SPEC §10 and seed 000, each in one
process cluster-wide (a Redis lock that is also its timer), each turned off by its setting:
every SLOT_RECONCILE_INTERVAL_S the slot leases are checked against the jobs that hold them; every
minute, Hunyuan 3D jobs whose task the vendor has forgotten (HUNYUAN3D_TASK_TTL_S) are ended; every
hour, closed months' usage is stored; daily, the membership sweep, the balance = ledger check, and
retention (result files, job rows, direct uploads); weekly, the temp sweep.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import redis
import structlog

from domain import scheduling
from domain.jobs import Job
from domain.jobs import JobStatus as S
from infra import metrics, reports, retention, tempfiles
from infra.accounts import record_ledger_check
from infra.bucket import DELETE_BATCH, Bucket
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
ROWS_KEY = "genq:maintenance:row-retention"
UPLOADS_KEY = "genq:maintenance:upload-retention"
TEMP_KEY = "genq:maintenance:temp-sweep"
TEMP_EVERY_S = 7 * 86_400  # seed 000: temp files weekly
EXPIRED_IDS_KEY = "genq:maintenance:vendor-ids"
EXPIRED_IDS_EVERY_S = 60
USAGE_KEY = "genq:maintenance:usage"
USAGE_EVERY_S = 3_600  # a month is stored within the hour after it closes
SLOTS_KEY = "genq:maintenance:slots"
UPLOAD_PREFIX = "uploads/"  # api/accounts.py: each user's grants are under uploads/<user id>/
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


def purge_jobs(rt: Runtime) -> int:
    """Retention of rows (seed 000: expired records, daily): ended jobs older than JOB_RETENTION_DAYS
    go with their events, webhook deliveries, audits and vendor attempts, and their stored files
    with them. The ledger is never deleted (money's history; its rows keep the job's id). A closed
    month's usage is stored before any of its jobs go, so its report never changes; a batch goes
    whole, once every row may (infra.retention says what keeps a job). How many jobs went."""
    days = rt.policy.current.job_retention_days
    if days <= 0:
        return 0
    now = rt.now()
    store_usage(rt)
    ended_before, kept_from = now - timedelta(days=days), reports.closed_before(now)
    deleted = 0
    while (found := retention.doomed(rt.jobs.engine, ended_before=ended_before, kept_from=kept_from)).job_ids:
        keys = found.keys()  # files first: a crash here leaves rows to try again, never unrecorded files
        for start in range(0, len(keys), DELETE_BATCH):
            rt.storage.delete(keys[start : start + DELETE_BATCH])
        purged = retention.purge(rt.jobs.engine, found)
        if rt.meter is not None:
            rt.meter.remove(sum(size for job_id in purged.job_ids for _, size in found.files.get(job_id, ())))
        for table, count in purged.rows.items():
            metrics.RETENTION_ROWS.labels(table).inc(count)
        deleted += len(purged.job_ids)
        if not purged.job_ids:
            break  # what was found could not go after all (it changed meanwhile): next run
    if deleted:
        log.info("jobs_purged", jobs=deleted, days=days)
    return deleted


def expire_uploads(rt: Runtime, bucket: Bucket | None = None) -> int:
    """Direct uploads older than UPLOAD_RETENTION_DAYS (by their LastModified in storage) are
    deleted, except those a job that has not ended still names. A retry of an older job whose
    upload is gone fails and is refunded. How many went."""
    days = rt.policy.current.upload_retention_days
    if days <= 0:
        return 0
    bucket = bucket or Bucket.of(rt.settings)
    cutoff, in_use = rt.now() - timedelta(days=days), rt.jobs.active_upload_keys()
    old = [o for o in bucket.objects(UPLOAD_PREFIX) if o.modified < cutoff and o.key not in in_use]
    bucket.delete([o.key for o in old])
    metrics.RETENTION_DELETED.labels("uploads").inc(len(old))
    metrics.RETENTION_DELETED.labels("upload_bytes").inc(sum(o.size for o in old))
    if old:
        log.info("uploads_expired", uploads=len(old), days=days)
    return len(old)


def sweep_temp(rt: Runtime, bucket: Bucket | None = None, where: Path | None = None) -> int:
    """Weekly (seed 000): genq's temp leftovers unchanged for TEMP_MAX_AGE_S go — the `genq-sim-*`
    directories of the system temp directory (infra.tempfiles says what genq writes there), and
    multipart uploads started in our bucket and never finished (an archiver killed mid-copy; their
    parts are stored and billed until aborted). How many of both went."""
    max_age = rt.settings.temp_max_age_s
    if max_age <= 0:
        return 0
    cutoff = rt.now() - timedelta(seconds=max_age)
    removed = tempfiles.sweep(where or tempfiles.root(), unchanged_since=cutoff)
    metrics.TEMP_REMOVED.labels("files").inc(removed.files)
    metrics.TEMP_REMOVED.labels("bytes").inc(removed.bytes)
    bucket = bucket or Bucket.of(rt.settings)
    aborted = 0
    for upload in bucket.unfinished():
        if upload.initiated < cutoff and (upload.last_part is None or upload.last_part < cutoff):
            bucket.abort(upload)
            aborted += 1
    metrics.TEMP_REMOVED.labels("multipart_uploads").inc(aborted)
    if removed.files or aborted:
        log.info("temp_swept", files=removed.files, bytes=removed.bytes, multipart_uploads=aborted)
    return removed.files + aborted


def end_forgotten_tasks(rt: Runtime) -> int:
    """Hunyuan 3D keeps a task (its status, its output URLs) for 24 h after it made it (VENDORS
    §2.6). A job still on one then can never finish: it ends `failed` with `vendor_job_expired`
    and is refunded, through the same ending as any failure. A job in `processing` normally times
    out first (model_3d's deadline is 24 h from admission); this catches a longer DEADLINES entry,
    polls that stopped coming, and an archive that cannot ask for the outputs any more."""
    ttl = rt.policy.current.hunyuan3d_task_ttl_s
    if ttl <= 0:
        return 0
    ended, now = 0, rt.now()
    message = "Hunyuan 3D forgets a task 24 h after it is made; this one had not finished by then"
    copying = now - timedelta(seconds=rt.settings.stale_archiving_s)
    for job in rt.jobs.vendor_ids_older("hunyuan3d", accepted_before=now - timedelta(seconds=ttl)):
        if job.status is S.ARCHIVING and job.updated_at > copying:
            continue  # an archiver is at work (it heartbeats): it may have the files already
        end = finish_holding if job.status is S.PROCESSING else finish
        if end(rt, job, job.status, S.FAILED, code="vendor_job_expired", message=message):
            metrics.VENDOR_IDS_EXPIRED.labels(job.vendor).inc()
            log.warning("vendor_task_forgotten", job_id=job.id, vendor_task_id=job.vendor_task_id)
            ended += 1
    return ended


def store_usage(rt: Runtime) -> list[str]:
    """Monthly usage (seed 000): every closed month not stored yet is stored once (infra.reports);
    GET /v1/admin/usage then reads it. The months stored."""
    stored = reports.store_closed(rt.jobs.engine, now=rt.now())
    metrics.USAGE_MONTHS_STORED.inc(len(stored))
    if stored:
        log.info("usage_stored", months=stored)
    return stored


def reconcile_slots(rt: Runtime) -> int:
    """Leases in Redis checked against the jobs that hold them in the database: a live lease whose
    job is gone, has ended or moved on, or is on a later attempt is released, and its room admits
    the next job at once (admission's release path), instead of waiting for the lease to lapse. A
    room Redis lost is not looked at: the pass rebuilds it from the database first. How many."""
    freed = 0
    for room in rt.policy.rooms():
        if not rt.rooms.ready(room):
            continue
        for holder in rt.rooms.holders(room):
            if not rt.rooms.held(room, holder):
                continue  # lapsed: it counts for nothing, and the room's next take drops it
            job_id, _, attempt = holder.rpartition(":")
            job = rt.jobs.get(job_id)  # read after the lease: only admission writes Redis before the database
            if _holds(job, room, attempt) or not rt.rooms.release(room, holder):
                continue
            vendor, _, model = room.partition(":")
            metrics.SLOTS_RECONCILED.labels(vendor, model).inc()
            log.warning("slot_reconciled", room=room, holder=holder, status=job.status if job else None)
            freed += 1
            if job is not None and job.slot == room:
                admission.released(rt, job)  # this room, and every room its owner waits in
            else:
                admission.admit(rt, room)
    return freed


def _holds(job: Job | None, room: str, attempt: str) -> bool:
    """Whether `job` holds (or is just being admitted to) the lease of `attempt` in `room`.

    Admission takes the lease first and moves the job to `submitting` right after: a `queued` job
    whose next attempt holds a lease is between the two, and is left alone (if its admission died,
    nobody renews the lease and it lapses)."""
    if job is None or job.slot != room or not attempt.isdigit():
        return False
    if job.status in (S.SUBMITTING, S.PROCESSING):
        return int(attempt) == job.attempt
    return job.status is S.QUEUED and int(attempt) == job.attempt + 1


def run_periodically(stop: threading.Event, client: redis.Redis) -> None:
    """The maintenance loop: reconcile every interval, and run each scheduled task when it is due
    (see the module's docstring), each one process at a time cluster-wide."""
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
            run_scheduled(rt, client)
        except Exception:  # keep the loop alive through Redis or database blips
            log.exception("maintenance_failed")


def run_scheduled(rt: Runtime, client: redis.Redis) -> None:
    """The tasks of seed 000's schedule: each runs when its lock is free (the lock is also its timer),
    and one that fails (logged) keeps none of the others from running."""
    settings = rt.settings
    tasks: list[tuple[str, float, Callable[[Runtime], object]]] = [
        (SLOTS_KEY, settings.slot_reconcile_interval_s, reconcile_slots),
        (EXPIRED_IDS_KEY, EXPIRED_IDS_EVERY_S, end_forgotten_tasks),
        (USAGE_KEY, USAGE_EVERY_S if settings.usage_stats_enabled else 0, store_usage),
        (RETENTION_KEY, SWEEP_EVERY_S, expire_results),
        (ROWS_KEY, SWEEP_EVERY_S, purge_jobs),
        (UPLOADS_KEY, SWEEP_EVERY_S, expire_uploads),
        (TEMP_KEY, TEMP_EVERY_S, sweep_temp),
    ]
    for key, every_s, task in tasks:
        if every_s <= 0 or not client.set(key, "1", nx=True, px=max(int(every_s * 1000), 1)):
            continue
        try:
            task(rt)
        except Exception:
            log.exception("maintenance_task_failed", task=task.__name__)
