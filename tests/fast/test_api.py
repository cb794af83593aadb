"""API handlers in-process (no server): the charge and the job together, the error shape, what
each request sends. Messages go to a StubBroker; a test that needs them run drains it."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar
from litestar.testing import TestClient

from domain.jobs import JobStatus
from infra.resources import Resources
from tests.support import Traffic, auth, make_user, pose12_body

Client = TestClient[Litestar]


def test_submit_charges_records_and_sends_one_message(api: Client, resources: Resources, sent: Traffic) -> None:
    user = make_user(resources, credits=3)

    resp = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued" and body["kind"] == "model_pose12" and body["price"] == 1
    assert resources.accounts.balance(user.user_id) == 2
    assert resources.accounts.ledger(user.user_id)[-1] == (body["id"], "charge", -1)
    assert resources.jobs.events(body["id"]) == [(None, "queued")]
    assert [(m.actor_name, m.args[0]) for m, _ in sent.messages] == [("generation.enqueue_job", body["id"])]


def test_insufficient_credits_is_402_and_writes_nothing(api: Client, resources: Resources, sent: Traffic) -> None:
    user = make_user(resources, credits=0)

    resp = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert resp.status_code == 402
    assert resp.json()["error"]["code"] == "insufficient_credits"
    assert resources.accounts.ledger(user.user_id) == []
    assert sent.messages == []


def test_an_idempotency_key_replays_its_job_and_refuses_another_body(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=5)
    headers = {**auth(user), "Idempotency-Key": "order-42"}

    first = api.post("/v1/jobs", json=pose12_body(), headers=headers)
    again = api.post("/v1/jobs", json=pose12_body(), headers=headers)
    other = api.post("/v1/jobs", json=pose12_body(scene="studio"), headers=headers)

    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert resources.accounts.balance(user.user_id) == 4


def test_a_bad_input_is_422_naming_the_field_and_charges_nothing(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1)

    resp = api.post("/v1/jobs", json=pose12_body(scene="moon"), headers=auth(user))

    assert resp.status_code == 422, resp.text
    assert "scene" in resp.text
    assert resources.accounts.balance(user.user_id) == 1


def test_another_users_job_is_404_and_a_missing_key_401(api: Client, resources: Resources) -> None:
    owner, other = make_user(resources, credits=1), make_user(resources, credits=1, phone="13900000000")
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(owner)).json()["id"]

    theirs = api.get(f"/v1/jobs/{job_id}", headers=auth(other))
    anonymous = api.get(f"/v1/jobs/{job_id}")

    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    assert anonymous.status_code == 401


def test_a_cancelled_waiting_job_is_refunded_and_never_submitted(
    api: Client, resources: Resources, drain: Callable[[], None], sent: Traffic
) -> None:
    user = make_user(resources, credits=1)
    resources.rooms.pause("runninghub:pose12", ms=3_600_000)  # the job stays `queued`
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    drain()

    resp = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(user))
    drain()

    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert resources.accounts.balance(user.user_id) == 1
    assert sent.of("generation.submit_job") == []


def test_the_list_is_newest_first_and_paged(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=3)
    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(3)]

    first = api.get("/v1/jobs", params={"limit": 2}, headers=auth(user)).json()
    rest = api.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(user)).json()

    assert [j["id"] for j in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None


def test_health_readiness_and_pricing(api: Client) -> None:
    pricing = api.get("/v1/pricing").json()

    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200
    assert {row["kind"] for row in pricing} >= {"basic_clean", "model_pose12", "video", "model_3d"}


def test_a_finished_job_answers_its_results_as_signed_urls(
    api: Client, resources: Resources, drain: Callable[[], None]
) -> None:
    user = make_user(resources, credits=1)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    drain()

    body = api.get(f"/v1/jobs/{job_id}", headers=auth(user)).json()

    assert body["status"] == JobStatus.SUCCEEDED
    assert len(body["results"]) == 12
    assert all("X-Amz-Signature=" in r["url"] and r["content_type"] == "image/png" for r in body["results"])
    assert body["timings"]["total"] >= 0
