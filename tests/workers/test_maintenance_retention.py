"""Maintenance's retention of rows, stored monthly usage and direct uploads (seed 000: daily cleanup
of expired records, monthly usage statistics). Time moves by the runtime's clock, never by sleeping."""

from __future__ import annotations

import io
import itertools
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, insert, select, update

from domain.jobs import JobKind, JobStatus, ResultFile
from infra import reports
from infra.accounts import NewUser
from infra.bucket import Bucket
from infra.db import (
    credit_ledger,
    job_events,
    jobs,
    monthly_usage,
    vendor_attempts,
    webhook_attempts,
    webhook_deliveries,
)
from infra.jobstore import NewBatch, NewJob, results_value
from infra.reports import Month
from infra.resources import Resources
from infra.storage import Storage, make_s3_client
from tests.support import POSE12_INPUT, auth
from workers import maintenance
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
S = JobStatus
MARCH = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)  # March and April have closed
HOOK = "http://127.0.0.1:9/hook"


def job(user: NewUser, at: datetime, **fields: Any) -> NewJob:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "user_id": user.user_id,
        "kind": JobKind.MODEL_POSE12,
        "status": S.QUEUED,
        "input": POSE12_INPUT,
        "price": 1,
        "vendor": "runninghub",
        "model": "pose12",
        "deadline_at": at + timedelta(hours=1),
    }
    return NewJob(**(values | fields))


def made(resources: Resources, user: NewUser, at: datetime, **fields: Any) -> str:
    new = job(user, at, **fields)
    resources.jobs.create(new, now=at)
    return new.id


def walk(resources: Resources, job_id: str, path: list[JobStatus], at: datetime, **last: Any) -> None:
    steps = list(itertools.pairwise(path))
    for i, (current, target) in enumerate(steps):
        assert resources.jobs.move(job_id, current, target, now=at, **(last if i == len(steps) - 1 else {}))


def succeed(resources: Resources, job_id: str, at: datetime, **last: Any) -> None:
    walk(resources, job_id, [S.QUEUED, S.SUBMITTING, S.PROCESSING, S.ARCHIVING, S.SUCCEEDED], at, **last)


def fail(resources: Resources, job_id: str, at: datetime, *, refund: bool = True) -> None:
    walk(resources, job_id, [S.QUEUED, S.SUBMITTING, S.PROCESSING, S.FAILED], at)
    if refund:
        assert resources.jobs.refund(job_id, now=at)


def batch_of(resources: Resources, user: NewUser, at: datetime, rows: int) -> tuple[str, list[str]]:
    batch_id = uuid.uuid4().hex
    news = [job(user, at, batch_id=batch_id, batch_row=i) for i in range(rows)]
    spec = NewBatch(batch_id, user.user_id, None, JobKind.MODEL_POSE12, {"input": {}}, rows)
    resources.jobs.create_many(news, now=at, batch=spec)
    return batch_id, [new.id for new in news]


def count(resources: Resources, table: Any, where: Any = None) -> int:
    query = select(func.count()).select_from(table)
    with resources.engine.connect() as conn:
        return int(conn.execute(query if where is None else query.where(where)).scalar_one())


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def test_ended_jobs_past_the_retention_go_with_their_rows_and_files_but_never_the_ledger(
    resources: Resources, runtime_: Runtime, broker: dramatiq.Broker
) -> None:
    user = resources.accounts.create_user("13800000001", 20, now=MARCH - timedelta(days=1))
    files = (ResultFile(f"results/{user.user_id}/old/1/0.png", "image/png", 10),)
    resources.storage.upload(files[0].key, io.BytesIO(b"0123456789"), content_type="image/png")
    resources.meter.add(10)
    old = made(resources, user, MARCH, webhook_url=HOOK, webhook_events="all")
    succeed(resources, old, MARCH, results=results_value(files))
    refunded = made(resources, user, MARCH)
    fail(resources, refunded, MARCH)
    owed = made(resources, user, MARCH)  # its refund never came: the job stays until it has
    fail(resources, owed, MARCH, refund=False)
    recent = made(resources, user, NOW - timedelta(days=10))
    succeed(resources, recent, NOW - timedelta(days=10))
    done_batch, done_rows = batch_of(resources, user, MARCH, rows=2)
    for row in done_rows:
        succeed(resources, row, MARCH)
    open_batch, open_rows = batch_of(resources, user, MARCH, rows=2)
    succeed(resources, open_rows[0], MARCH)  # its other row still waits: the batch stays whole
    with resources.engine.begin() as conn:  # the old job's webhooks went out, once each
        conn.execute(update(webhook_deliveries).values(status="delivered"))
        for delivery in conn.execute(select(webhook_deliveries.c.id)).scalars():
            tried = {"delivery_id": delivery, "at": MARCH, "status_code": 200, "duration_ms": 5}
            conn.execute(insert(webhook_attempts).values(**tried))
        called = {"job_id": old, "attempt": 1, "vendor": "runninghub", "outcome": "accepted", "started_at": MARCH}
        conn.execute(insert(vendor_attempts).values(**called))
    ledger = count(resources, credit_ledger)
    march = reports.usage(resources.engine, Month.parse("2026-03"))
    rows_before = counter("genq_retention_rows_deleted_total", table="jobs")
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(job_retention_days=30))
    runtime_.clock = at(NOW)

    deleted = maintenance.purge_jobs(runtime_)
    again = maintenance.purge_jobs(runtime_)

    gone = {old, refunded, *done_rows}
    assert (deleted, again) == (4, 0)
    assert all(resources.jobs.get(job_id) is None for job_id in gone)
    assert all(resources.jobs.get(job_id) is not None for job_id in (owed, recent, *open_rows))
    assert resources.batches.get(open_batch) is not None and resources.batches.get(done_batch) is None
    assert count(resources, job_events, job_events.c.job_id.in_(gone)) == 0
    assert count(resources, webhook_deliveries) == count(resources, webhook_attempts) == 0
    assert count(resources, vendor_attempts) == 0
    assert not resources.storage.exists(files[0].key) and resources.meter.held() == 0
    assert count(resources, credit_ledger) == ledger  # the money's history stays whole...
    assert count(resources, credit_ledger, credit_ledger.c.job_id == old) == 1  # ...naming the job
    assert runtime_.accounts.ledger_mismatches() == []
    assert reports.usage(resources.engine, Month.parse("2026-03")) == march  # stored before anything went
    assert counter("genq_retention_rows_deleted_total", table="jobs") - rows_before == 4


def test_without_a_job_retention_every_row_is_kept(resources: Resources, runtime_: Runtime) -> None:
    user = resources.accounts.create_user("13800000001", 1, now=MARCH)
    job_id = made(resources, user, MARCH)
    succeed(resources, job_id, MARCH)
    runtime_.clock = at(NOW + timedelta(days=3650))

    assert maintenance.purge_jobs(runtime_) == 0
    assert resources.jobs.get(job_id) is not None


def test_a_closed_month_is_stored_once_and_its_report_stays_when_its_jobs_are_gone(
    api: Client, resources: Resources, runtime_: Runtime
) -> None:
    admin = resources.accounts.create_user("10000000000", 0, now=MARCH, role="admin")
    user = resources.accounts.create_user("13800000001", 10, now=MARCH)
    succeed(resources, made(resources, user, MARCH), MARCH + timedelta(minutes=5))
    fail(resources, made(resources, user, MARCH + timedelta(days=1)), MARCH + timedelta(days=1))
    succeed(resources, made(resources, user, NOW), NOW)  # May: still open
    live = api.get("/v1/admin/usage?month=2026-03", headers=auth(admin)).json()
    runtime_.clock = at(datetime(2026, 4, 1, 0, 30, tzinfo=UTC))  # March ended, but not an hour ago
    early = maintenance.store_usage(runtime_)
    stored_before = counter("genq_usage_months_stored_total")
    runtime_.clock = at(NOW)

    stored = maintenance.store_usage(runtime_)
    again = maintenance.store_usage(runtime_)
    with resources.engine.begin() as conn:  # whatever happens to March's jobs from now on...
        conn.execute(delete(job_events))
        conn.execute(update(jobs).where(jobs.c.created_at < NOW).values(kind="basic_clean"))
    march = api.get("/v1/admin/usage?month=2026-03", headers=auth(admin)).json()
    may = api.get("/v1/admin/usage?month=2026-05", headers=auth(admin)).json()

    assert (early, stored, again) == ([], ["2026-03", "2026-04"], [])
    assert counter("genq_usage_months_stored_total") - stored_before == 2
    assert live["stored_at"] is None and march["stored_at"] is not None
    assert march["items"] == live["items"]  # ...the stored month answers as it was
    assert [(r["kind"], r["submitted"], r["credits_charged"]) for r in live["items"]] == [("model_pose12", 2, 2)]
    assert may["stored_at"] is None and [(r["kind"], r["succeeded"]) for r in may["items"]] == [("model_pose12", 1)]


def test_two_processes_storing_one_month_store_it_once(resources: Resources) -> None:
    user = resources.accounts.create_user("13800000001", 10, now=MARCH)
    for i in range(3):
        succeed(resources, made(resources, user, MARCH + timedelta(hours=i)), MARCH + timedelta(hours=i))
    start = threading.Barrier(2)
    answers: list[bool] = []

    def store() -> None:
        start.wait()
        answers.append(reports.store(resources.engine, Month.parse("2026-03"), now=NOW))

    threads = [threading.Thread(target=store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [False, True]
    assert count(resources, monthly_usage) == 1
    assert [(r.submitted, r.succeeded) for r in reports.usage(resources.engine, Month.parse("2026-03"))] == [(3, 3)]


def test_uploads_past_their_retention_are_deleted_unless_a_waiting_job_names_them(
    resources: Resources, runtime_: Runtime
) -> None:
    client = make_s3_client(resources.settings, resources.settings.s3_endpoint_url)
    storage = Storage(client, f"genq-uploads-{uuid.uuid4().hex[:8]}")  # a bucket of its own: only its uploads
    storage.ensure_bucket()
    user = resources.accounts.create_user("13800000001", 5, now=MARCH)
    forgotten, named, result = (f"uploads/{user.user_id}/a.png", f"uploads/{user.user_id}/b.png", "results/x/0.png")
    for key in (forgotten, named, result):
        storage.upload(key, io.BytesIO(b"png-bytes"), content_type="image/png")
    made(resources, user, datetime.now(UTC), input={"upload_key": named, "scene": "street", "category": "dress"})
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(upload_retention_days=7))
    deleted_before = counter("genq_retention_deleted_total", what="uploads")

    runtime_.clock = at(datetime.now(UTC) + timedelta(days=6))
    young = maintenance.expire_uploads(runtime_, Bucket(client, storage.bucket))
    runtime_.clock = at(datetime.now(UTC) + timedelta(days=8))
    old = maintenance.expire_uploads(runtime_, Bucket(client, storage.bucket))

    assert (young, old) == (0, 1)
    assert not storage.exists(forgotten)
    assert storage.exists(named) and storage.exists(result)
    assert counter("genq_retention_deleted_total", what="uploads") - deleted_before == 1
