"""Retry: a failed, timed-out or cancelled job runs again as a new job, charged again, linked both ways."""

from __future__ import annotations

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
