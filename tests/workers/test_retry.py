"""Retry: a failed, timed-out or cancelled job runs again as a new job, charged again, linked both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient

from infra.resources import Resources
from tests.support import auth, make_user, pose12_body, terminal_job
from vendors.sim.runninghub import RunningHubSim

Client = TestClient[Litestar]


def test_a_failed_job_retried_runs_again_charged_and_linked(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    rh_sim.configure(job_fail_rate=1.0)
    user = make_user(resources, credits=2)
    failed = terminal_job(resources, api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])
    rh_sim.configure(job_fail_rate=0.0)

    resp = api.post(f"/v1/jobs/{failed.id}/retry", headers=auth(user))
    again = terminal_job(resources, resp.json()["id"])
    original = api.get(f"/v1/jobs/{failed.id}", headers=auth(user)).json()

    assert resp.status_code == 202 and resp.json()["retry_of"] == failed.id
    assert again.status == "succeeded" and again.input == failed.input
    assert original["retried_by"] == [again.id]
    ledger = [(job_id, kind) for job_id, kind, _ in resources.accounts.ledger(user.user_id)]
    assert (again.id, "charge") in ledger and (failed.id, "refund") in ledger


def test_only_failed_timed_out_or_cancelled_jobs_can_be_retried(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=2, phone="13800000001")
    stranger = make_user(resources, credits=2, phone="13800000002")
    done = terminal_job(resources, api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])

    succeeded = api.post(f"/v1/jobs/{done.id}/retry", headers=auth(user))
    not_theirs = api.post(f"/v1/jobs/{done.id}/retry", headers=auth(stranger))

    assert (succeeded.status_code, succeeded.json()["error"]["code"]) == (409, "conflict")
    assert not_theirs.status_code == 404
    assert resources.accounts.balance(user.user_id) == 1  # nothing charged for the refusal


def test_an_admin_retries_by_error_code_after_a_dry_run_and_the_action_is_recorded(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    user = make_user(resources, credits=10, plan="enterprise")
    rh_sim.configure(job_fail_rate=1.0)
    failed = [
        terminal_job(resources, api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])
        for _ in range(3)
    ]
    rh_sim.configure(job_fail_rate=0.0)
    done = terminal_job(resources, api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])
    picked = {"filter": {"error_code": failed[0].error_code, "kind": "model_pose12"}}

    dry = api.post("/v1/admin/jobs/retry", json=picked, headers=auth(admin)).json()
    real = api.post("/v1/admin/jobs/retry", json={**picked, "dry_run": False}, headers=auth(admin)).json()
    retried = [terminal_job(resources, job_id) for job_id in real["job_ids"]]
    [action] = api.get("/v1/admin/actions", headers=auth(admin)).json()

    assert (dry["matched"], dry["acted"], sorted(dry["job_ids"])) == (3, 0, sorted(j.id for j in failed))
    assert (real["matched"], real["acted"]) == (3, 3)
    assert sorted(j.retry_of or "" for j in retried) == sorted(j.id for j in failed)
    assert done.id not in {j.retry_of for j in retried}
    assert (action["action"], action["acted"], action["by"]) == ("jobs.retry", 3, admin.user_id)
    assert action["filter"]["error_code"] == failed[0].error_code


def test_an_admin_cancels_waiting_jobs_by_filter(api: Client, resources: Resources, worker: dramatiq.Worker) -> None:
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    resources.rooms.pause("runninghub:pose12", ms=600_000)
    user = make_user(resources, credits=2)
    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(2)]

    real = api.post(
        "/v1/admin/jobs/cancel", json={"filter": {"user_id": user.user_id}, "dry_run": False}, headers=auth(admin)
    ).json()

    assert (real["matched"], real["acted"], sorted(real["job_ids"])) == (2, 2, sorted(ids))
    assert {resources.jobs.get(job_id).status for job_id in ids} == {"cancelled"}  # type: ignore[union-attr]
