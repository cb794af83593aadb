"""Maintenance's sweeps: genq's temp leftovers (weekly, seed 000), Hunyuan 3D jobs whose vendor task
outlived the vendor's 24 h, and slot leases Redis holds for jobs that no longer hold them. Time moves
by the runtime's clock, never by sleeping."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dramatiq
import redis
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from domain.jobs import Job, JobKind, JobStatus
from infra.accounts import NewUser
from infra.bucket import Bucket
from infra.jobstore import NewJob
from infra.resources import Resources
from infra.storage import make_s3_client
from tests.support import POSE12_INPUT, auth, make_user, wait_for
from vendors.sim.hunyuan3d import Hunyuan3DSim
from workers import admission, maintenance
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
S = JobStatus
ROOM = "runninghub:pose12"


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_temp_sweep_removes_genq_leftovers_unchanged_past_the_bound(
    resources: Resources, runtime_: Runtime, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    left = tmp_path / "genq-sim-killed"  # a render `genq run` was killed in the middle of
    left.mkdir()
    (left / "clip.mp4").write_bytes(b"x" * 1000)
    rendering = tmp_path / "genq-sim-rendering"  # a render still being written
    rendering.mkdir()
    (rendering / "clip.mp4").write_bytes(b"y" * 10)
    later = (now + timedelta(days=2)).timestamp()
    os.utime(rendering / "clip.mp4", (later, later))
    (tmp_path / "someone-elses").write_bytes(b"z")
    client = make_s3_client(resources.settings, resources.settings.s3_endpoint_url)
    bucket = Bucket(client, f"genq-temp-{uuid.uuid4().hex[:8]}")  # a bucket of its own: only its uploads
    client.create_bucket(Bucket=bucket.bucket)
    key = "results/u/j/1/0.mp4"  # an archiver killed while copying a large output
    upload = client.create_multipart_upload(Bucket=bucket.bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket.bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"p" * 1024)
    files_before = counter("genq_temp_removed_total", what="files")

    fresh = maintenance.sweep_temp(runtime_, bucket, tmp_path)
    runtime_.clock = lambda: now + timedelta(days=1, hours=1)  # TEMP_MAX_AGE_S (a day) later
    stale = maintenance.sweep_temp(runtime_, bucket, tmp_path)

    assert (fresh, stale) == (0, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genq-sim-rendering", "someone-elses"]
    assert list(bucket.unfinished()) == []
    assert counter("genq_temp_removed_total", what="files") - files_before == 1


def in_state(resources: Resources, job_id: str, status: JobStatus) -> Job | None:
    job = resources.jobs.get(job_id)
    return job if job is not None and job.status is status else None


def test_a_3d_job_whose_vendor_task_outlived_24h_ends_failed_and_refunded(
    api: Client, resources: Resources, worker: dramatiq.Worker, hy_sim: Hunyuan3DSim, runtime_: Runtime
) -> None:
    hy_sim.configure(running_s=3600)
    longer = resources.settings.with_(deadlines="model_3d=172800", poll_schedule_3d="0:3600")  # 48 h, polls hourly
    resources.settings = runtime_.settings = longer
    runtime_.policy = Policy.from_settings(longer)
    user = make_user(resources, credits=5)
    job_id = api.post(
        "/v1/jobs", json={"kind": "model_3d", "input": {"version": "3.0", "prompt": "a vase"}}, headers=auth(user)
    ).json()["id"]
    job = wait_for(lambda: in_state(resources, job_id, S.PROCESSING), what="the vendor's task")
    accepted = job.processing_at
    assert accepted is not None
    expired_before = counter("genq_vendor_ids_expired_total", vendor="hunyuan3d")

    runtime_.clock = lambda: accepted + timedelta(hours=23)
    early = maintenance.end_forgotten_tasks(runtime_)
    runtime_.clock = lambda: accepted + timedelta(hours=24, seconds=1)
    late = maintenance.end_forgotten_tasks(runtime_)
    ended = resources.jobs.get(job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 5, what="the refund")

    assert (early, late) == (0, 1)
    assert ended is not None and ended.status is S.FAILED and ended.error_code == "vendor_job_expired"
    assert resources.rooms.in_flight("hunyuan3d:pro") == 0
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)].count("refund") == 1
    assert counter("genq_vendor_ids_expired_total", vendor="hunyuan3d") - expired_before == 1


def queued(resources: Resources, user: NewUser) -> Job:
    """A pose12 job waiting for its slot (not yet in its room)."""
    now = datetime.now(UTC)
    new = NewJob(
        id=uuid.uuid4().hex,
        user_id=user.user_id,
        kind=JobKind.MODEL_POSE12,
        status=S.QUEUED,
        input=POSE12_INPUT,
        price=1,
        vendor="runninghub",
        model="pose12",
        deadline_at=now + timedelta(hours=1),
    )
    resources.jobs.create(new, now=now)
    job = resources.jobs.get(new.id)
    assert job is not None
    return job


def test_leases_of_jobs_that_no_longer_hold_them_are_released_and_the_room_admits_the_next(
    resources: Resources, runtime_: Runtime, broker: dramatiq.Broker
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(runninghub_concurrency=4))
    admission.rebuild_if_lost(runtime_, ROOM)
    user = make_user(resources, credits=10, plan="enterprise")
    running = queued(resources, user)
    admission.enqueue(runtime_, running)
    admitted = resources.jobs.get(running.id)
    assert admitted is not None and admitted.status is S.SUBMITTING
    assert resources.jobs.accept(admitted, "task-1", now=datetime.now(UTC)) is not None
    ended, admitting = queued(resources, user), queued(resources, user)
    assert resources.jobs.move(ended.id, S.QUEUED, S.CANCELLED, now=datetime.now(UTC))
    stale = [f"{running.id}:0", f"{ended.id}:1"]  # an earlier attempt's; an ended job's (its release was lost)
    resources.rooms.renew(ROOM, [*stale, f"{admitting.id}:1"], limit=4)  # the last: taken, not yet admitted
    waiting = queued(resources, user)
    admission.enqueue(runtime_, waiting)  # the room is full
    assert resources.jobs.get(waiting.id).status is S.QUEUED  # type: ignore[union-attr]
    reconciled_before = counter("genq_slots_reconciled_total", vendor="runninghub", model="pose12")

    freed = maintenance.reconcile_slots(runtime_)
    again = maintenance.reconcile_slots(runtime_)

    assert (freed, again) == (2, 0)
    live = {h for h in resources.rooms.holders(ROOM) if resources.rooms.held(ROOM, h)}
    assert live == {f"{running.id}:1", f"{admitting.id}:1", f"{waiting.id}:1"}
    assert resources.jobs.get(waiting.id).status is S.SUBMITTING  # type: ignore[union-attr]
    assert counter("genq_slots_reconciled_total", vendor="runninghub", model="pose12") - reconciled_before == 2


def test_each_scheduled_task_runs_in_one_process_at_a_time(
    resources: Resources, runtime_: Runtime, redis_client: redis.Redis
) -> None:
    runtime_.settings = runtime_.settings.with_(temp_max_age_s=0)  # a test leaves the machine's temp dir alone
    admission.rebuild_if_lost(runtime_, ROOM)
    resources.rooms.renew(ROOM, ["gone:1"], limit=3)  # a lease whose job is not in the database
    maintenance.run_scheduled(runtime_, redis_client)
    resources.rooms.renew(ROOM, ["gone-too:1"], limit=3)

    maintenance.run_scheduled(runtime_, redis_client)  # another maintenance process, within the minute

    assert not resources.rooms.held(ROOM, "gone:1") and resources.rooms.held(ROOM, "gone-too:1")
    assert 0 < redis_client.pttl(maintenance.SLOTS_KEY) <= 60_000
    assert 86_400_000 < redis_client.pttl(maintenance.TEMP_KEY) <= 7 * 86_400_000
    for key in (maintenance.EXPIRED_IDS_KEY, maintenance.USAGE_KEY, maintenance.ROWS_KEY, maintenance.UPLOADS_KEY):
        assert redis_client.pttl(key) > 0, key


def test_a_3d_archive_past_24h_ends_once_no_archiver_is_at_work_on_it(
    resources: Resources, worker: dramatiq.Worker, runtime_: Runtime
) -> None:
    user = make_user(resources, credits=5)
    accepted = datetime.now(UTC) - timedelta(hours=25)
    new = NewJob(
        id=uuid.uuid4().hex,
        user_id=user.user_id,
        kind=JobKind.MODEL_3D,
        status=S.QUEUED,
        input={"version": "3.0", "prompt": "a vase"},
        price=5,
        vendor="hunyuan3d",
        model="pro",
        deadline_at=accepted + timedelta(days=2),
    )
    resources.jobs.create(new, now=accepted)
    for current, target in [(S.QUEUED, S.SUBMITTING), (S.SUBMITTING, S.PROCESSING), (S.PROCESSING, S.ARCHIVING)]:
        assert resources.jobs.move(new.id, current, target, now=accepted, vendor_task_id="hy-task-1")
    runtime_.clock = lambda: datetime.now(UTC)
    assert resources.jobs.touch(new.id, S.ARCHIVING, now=datetime.now(UTC))  # an archiver's heartbeat, just now

    busy = maintenance.end_forgotten_tasks(runtime_)
    runtime_.clock = lambda: datetime.now(UTC) + timedelta(seconds=runtime_.settings.stale_archiving_s + 1)
    idle = maintenance.end_forgotten_tasks(runtime_)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 5, what="the refund")

    assert (busy, idle) == (0, 1)
    assert resources.jobs.get(new.id).error_code == "vendor_job_expired"  # type: ignore[union-attr]
