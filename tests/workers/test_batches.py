"""Batches (seed 001): rows from defaults, charged all or nothing, fast rows first under the plan's
cap, progress, pause / resume / cancel, retry of failed rows, and the zip of every result."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image
from sqlalchemy import func, select

from domain.jobs import JobStatus
from infra.db import batches, credit_ledger, jobs, vendor_attempts
from infra.resources import Resources
from tests.support import GARMENT, POSE12_INPUT, auth, make_user, wait_for
from tests.workers.test_admission import admissions, fill_then_open
from tests.workers.test_event_stream import SSE, read_events
from vendors.sim.kie import KieSim
from vendors.sim.runninghub import RunningHubSim
from workers import broker as workers_broker
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
VIDEO = {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a coat in the wind"}


def video_batch(rows: list[dict[str, Any]], **defaults: Any) -> dict[str, Any]:
    return {"defaults": {"kind": "video", "input": {**VIDEO, **defaults}}, "rows": [{"input": r} for r in rows]}


def pose12_batch(rows: int) -> dict[str, Any]:
    return {"defaults": {"kind": "model_pose12", "input": POSE12_INPUT}, "rows": [{} for _ in range(rows)]}


def create(api: Client, user: Any, body: dict[str, Any]) -> dict[str, Any]:
    resp = api.post("/v1/batches", json=body, headers=auth(user))
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def completed(api: Client, user: Any, batch_id: str, *, timeout_s: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        answer: dict[str, Any] = api.get(f"/v1/batches/{batch_id}", headers=auth(user)).json()
        assert sum(answer["counts"].values()) == answer["rows"]  # every read adds up
        return answer if answer["status"] == "completed" else None

    return wait_for(probe, timeout_s=timeout_s, what="the batch to complete")


def settled(api: Client, user: Any, batch_id: str) -> dict[str, Any] | None:
    """The batch once every row has ended and every cancelled row has been refunded."""
    answer: dict[str, Any] = api.get(f"/v1/batches/{batch_id}", headers=auth(user)).json()
    ended = answer["counts"].get("cancelled", 0) + answer["counts"].get("succeeded", 0) == answer["rows"]
    return answer if ended and answer["credits_refunded"] == answer["counts"].get("cancelled", 0) else None


def count(resources: Resources, table: Any, *where: Any) -> int:
    with resources.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_a_pro_batch_of_15_rows_is_charged_once_for_the_sum_of_its_rows(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1000, plan="pro")
    rows = [{"duration": 15, "prompt": f"row {i}"} if i % 3 == 0 else {"prompt": f"row {i}"} for i in range(15)]
    headers = {**auth(user), "Idempotency-Key": "batch-1"}

    first = api.post("/v1/batches", json=video_batch(rows), headers=headers)
    replay = api.post("/v1/batches", json=video_batch(rows), headers=headers)
    listed = api.get(f"/v1/batches/{first.json()['id']}/jobs", headers=auth(user)).json()

    expected = sum(20 if i % 3 == 0 else 15 for i in range(15))  # sora-2 720p: 10 s 15, 15 s 20 credits
    assert first.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert first.json()["credits_charged"] == expected and first.json()["rows"] == 15
    assert resources.accounts.balance(user.user_id) == 1000 - expected
    charges = count(resources, credit_ledger, credit_ledger.c.user_id == user.user_id, credit_ledger.c.kind == "charge")
    assert charges == 15
    inputs = [resources.jobs.get(row["job_id"]) for row in listed]
    assert [job.input["prompt"] for job in inputs if job] == [f"row {i}" for i in range(15)]
    assert [job.input["duration"] for job in inputs if job][:4] == [15, 10, 10, 15]
    assert {job.priority for job in inputs if job} == {"batch_fast"}


def test_too_many_rows_too_few_credits_or_one_bad_row_create_nothing(api: Client, resources: Resources) -> None:
    pro = make_user(resources, credits=1000, plan="pro", phone="13800000001")
    poor = make_user(resources, credits=20, plan="pro", phone="13800000002")

    too_many = api.post("/v1/batches", json=video_batch([{}] * 16), headers=auth(pro))
    short = api.post("/v1/batches", json=video_batch([{}] * 2), headers=auth(poor))
    bad = api.post("/v1/batches", json=video_batch([{}, {}, {"duration": 7}]), headers=auth(pro))

    assert (too_many.status_code, too_many.json()["error"]["code"]) == (422, "batch_too_large")
    assert too_many.json()["error"]["details"]["limit"] == 15
    assert (short.status_code, short.json()["error"]["details"]) == (402, {"needed": 30, "balance": 20})
    assert (bad.status_code, bad.json()["error"]["details"]["field"]) == (422, "rows[2].input.duration")
    assert count(resources, batches) == count(resources, jobs) == 0
    assert count(resources, credit_ledger, credit_ledger.c.kind == "charge") == 0
    assert resources.accounts.balance(pro.user_id) == 1000 and resources.accounts.balance(poor.user_id) == 20


def test_fast_rows_are_admitted_before_slow_ones_whatever_their_order(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(kie_concurrency_sora_2_pro=2))
    kie_sim.configure(rate_limit=None)
    user = make_user(resources, credits=10_000, plan="enterprise")
    body = video_batch([{"resolution": "1080p", "duration": 15}] * 3 + [{}] * 3, model="sora-2-pro")

    ids: list[str] = []
    fill_then_open(resources, "kie:sora-2-pro", lambda: ids.append(create(api, user, body)["id"]) or [], 6)
    answer = completed(api, user, ids[0])
    rows = api.get(f"/v1/batches/{ids[0]}/jobs", headers=auth(user)).json()

    slow, fast = {r["job_id"] for r in rows[:3]}, {r["job_id"] for r in rows[3:]}
    order = admissions(resources)
    assert set(order[:3]) == fast and set(order[3:]) == slow
    assert answer["counts"] == {"succeeded": 6} and answer["progress"] == 1.0


def test_the_plan_cap_holds_across_the_batch_and_progress_adds_up(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(runninghub_concurrency=10))
    rh_sim.configure(running_s=0.3)
    user = make_user(resources, credits=100, plan="pro")  # concurrency 3

    batch = create(api, user, pose12_batch(8))
    answer = completed(api, user, batch["id"])

    assert rh_sim.max_concurrent(resources.settings.runninghub_api_key.reveal()) == 3
    assert answer["counts"] == {"succeeded": 8} and answer["finished"] == 8
    assert answer["finished_at"] is not None and answer["estimated_completion_at"] is None


def test_nothing_starts_while_paused_resume_continues(
    api: Client, resources: Resources, runtime_: Runtime, broker: dramatiq.Broker
) -> None:
    user = make_user(resources, credits=100, plan="pro")
    batch = create(api, user, pose12_batch(3))  # no worker yet: every row is queued
    paused = api.post(f"/v1/batches/{batch['id']}/pause", headers=auth(user)).json()
    again = api.post(f"/v1/batches/{batch['id']}/pause", headers=auth(user))

    the_worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    the_worker.start()
    try:
        for queue in workers_broker.QUEUES:
            broker.join(queue, timeout=30_000)  # every message so far handled: the rows were offered
        the_worker.join()
        held = api.get(f"/v1/batches/{batch['id']}", headers=auth(user)).json()
        assert paused["status"] == "paused" and again.status_code == 409
        assert held["counts"] == {"queued": 3} and count(resources, vendor_attempts) == 0

        resumed = api.post(f"/v1/batches/{batch['id']}/resume", headers=auth(user)).json()
        answer = completed(api, user, batch["id"])
    finally:
        the_worker.stop(timeout=5_000)
    assert resumed["status"] == "running" and answer["counts"] == {"succeeded": 3}


def test_cancel_ends_every_waiting_row_refunded_once(
    api: Client, resources: Resources, worker: dramatiq.Worker, runtime_: Runtime
) -> None:
    user = make_user(resources, credits=100, plan="pro")
    batch = create(api, user, pose12_batch(4))
    api.post(f"/v1/batches/{batch['id']}/pause", headers=auth(user))
    cancelled = api.post(f"/v1/batches/{batch['id']}/cancel", headers=auth(user)).json()
    refunded = wait_for(lambda: settled(api, user, batch["id"]), what="every row ended and refunded")
    ledger = sum(amount for _, _, amount in resources.accounts.ledger(user.user_id))

    terminal = sum(refunded["counts"].get(s, 0) for s in ("cancelled", "succeeded"))
    assert cancelled["status"] == "cancelled" and terminal == 4
    assert refunded["credits_refunded"] == refunded["counts"].get("cancelled", 0)
    assert resources.accounts.balance(user.user_id) == ledger == 100 - 4 + refunded["credits_refunded"]


def test_retry_reruns_only_the_failed_rows_linked_and_charged_again(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    user = make_user(resources, credits=100, plan="pro")
    rh_sim.configure(job_fail_rate=1.0)
    batch = create(api, user, pose12_batch(3))
    failed = completed(api, user, batch["id"])
    rh_sim.configure(job_fail_rate=0.0)

    retried = api.post(f"/v1/batches/{batch['id']}/retry", headers=auth(user))
    done = completed(api, user, batch["id"])
    nothing_left = api.post(f"/v1/batches/{batch['id']}/retry", headers=auth(user))
    rows = api.get(f"/v1/batches/{batch['id']}/jobs", headers=auth(user)).json()

    assert failed["counts"] == {"failed": 3} and [f["count"] for f in failed["failures"]] == [3]
    assert failed["failures"][0]["retry_worthy"] is True
    assert retried.status_code == 200 and done["counts"] == {"succeeded": 3}
    assert all(row["retry_of"] for row in rows) and nothing_left.status_code == 409
    assert (done["credits_charged"], done["credits_refunded"]) == (6, 3)
    first = resources.jobs.get(rows[0]["retry_of"])
    assert first is not None and first.status is JobStatus.FAILED
    assert resources.jobs.retried_by(first.id) == [rows[0]["job_id"]]


@pytest.mark.timeout(240)
def test_the_archive_is_a_zip_of_every_result_and_a_manifest(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=100, plan="enterprise")
    body = {"defaults": {"kind": "basic_clean", "input": {"image_url": GARMENT}}, "rows": [{} for _ in range(20)]}
    batch = create(api, user, body)
    completed(api, user, batch["id"], timeout_s=180)

    resp = api.get(f"/v1/batches/{batch['id']}/archive", headers=auth(user))
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    rows = api.get(f"/v1/batches/{batch['id']}/jobs", headers=auth(user)).json()

    assert resp.headers["content-type"] == "application/zip" and archive.testzip() is None
    images = [name for name in archive.namelist() if name != "manifest.csv"]
    assert len(images) == 20 and all(Image.open(io.BytesIO(archive.read(n))).size for n in images)
    assert [(m["row"], m["job_id"], m["status"]) for m in manifest] == [
        (str(r["row"]), r["job_id"], "succeeded") for r in rows
    ]
    assert sorted(f for m in manifest for f in m["files"].split()) == sorted(images)


def test_admins_find_a_batchs_jobs_and_see_batches_in_the_usage_report(api: Client, resources: Resources) -> None:
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    user = make_user(resources, credits=100, plan="pro")
    batch = create(api, user, pose12_batch(3))
    api.post("/v1/jobs", json={"kind": "model_pose12", "input": POSE12_INPUT}, headers=auth(user))

    found = api.get("/v1/admin/jobs", params={"batch_id": batch["id"]}, headers=auth(admin)).json()["items"]
    [usage] = api.get("/v1/admin/usage", headers=auth(admin)).json()["items"]

    assert sorted(job["batch_row"] for job in found) == [0, 1, 2]
    assert {job["batch_id"] for job in found} == {batch["id"]}
    assert (usage["submitted"], usage["batches"], usage["batch_jobs"]) == (4, 1, 3)


def test_a_batch_streams_its_progress_until_every_row_has_ended(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=100, plan="pro")
    batch = create(api, user, pose12_batch(3))

    events = read_events(api, f"/v1/batches/{batch['id']}/events", {**auth(user), **SSE})

    answers = [json.loads(event["data"]) for event in events]
    assert {event["event"] for event in events} == {"progress"}
    assert all(sum(a["counts"].values()) == 3 for a in answers)
    assert [a["finished"] for a in answers] == sorted(a["finished"] for a in answers)
    assert answers[-1]["status"] == "completed" and answers[-1]["counts"] == {"succeeded": 3}


def test_batches_are_listed_newest_first_page_by_page(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=100, plan="pro")
    other = make_user(resources, credits=100, plan="pro", phone="13800000009")
    first, second = create(api, user, pose12_batch(1)), create(api, user, pose12_batch(2))
    create(api, other, pose12_batch(1))

    page = api.get("/v1/batches", params={"limit": 1}, headers=auth(user)).json()
    rest = api.get("/v1/batches", params={"limit": 1, "cursor": page["next_cursor"]}, headers=auth(user)).json()
    theirs = api.get(f"/v1/batches/{first['id']}", headers=auth(other))

    assert [b["id"] for b in page["items"]] == [second["id"]] and page["next_cursor"]
    assert [b["id"] for b in rest["items"]] == [first["id"]] and rest["next_cursor"] is None
    assert theirs.status_code == 404
