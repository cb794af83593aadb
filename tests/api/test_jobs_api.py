"""The HTTP API over a real database: charge and job together, errors in one shape, nothing lost."""

from __future__ import annotations

import pytest
import redis
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import func, select

from domain.jobs import JobStatus
from infra.db import credit_ledger, jobs
from infra.resources import Resources
from tests.support import auth, make_user, pose12_body

Client = TestClient[Litestar]


def count(resources: Resources, table: object) -> int:
    with resources.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_submit_charges_records_and_enqueues(api: Client, resources: Resources, redis_client: redis.Redis) -> None:
    user = make_user(resources, credits=3)

    resp = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert resp.status_code == 202
    body = resp.json()
    assert body["status"] == "queued" and body["kind"] == "model_pose12" and body["price"] == 1
    assert resources.accounts.balance(user.user_id) == 2
    assert resources.accounts.ledger(user.user_id)[-1] == (body["id"], "charge", -1)
    assert resources.jobs.events(body["id"]) == [(None, "queued")]
    assert redis_client.llen("genq:generation") == 1


def test_insufficient_credits_is_402_and_writes_nothing(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=0)

    resp = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert resp.status_code == 402
    assert resp.json()["error"]["code"] == "insufficient_credits"
    assert count(resources, jobs) == 0
    assert resources.accounts.ledger(user.user_id) == []


def test_same_idempotency_key_and_body_gives_the_same_job_charged_once(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=5)
    headers = {**auth(user), "Idempotency-Key": "order-42"}

    first = api.post("/v1/jobs", json=pose12_body(), headers=headers)
    second = api.post("/v1/jobs", json=pose12_body(), headers=headers)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert resources.accounts.balance(user.user_id) == 4


def test_same_idempotency_key_with_another_body_is_409(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=5)
    headers = {**auth(user), "Idempotency-Key": "order-42"}
    api.post("/v1/jobs", json=pose12_body(), headers=headers)

    resp = api.post("/v1/jobs", json=pose12_body(scene="studio"), headers=headers)

    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "conflict"
    assert resources.accounts.balance(user.user_id) == 4


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gq_not-a-key"}, {"Authorization": "Basic x"}])
def test_missing_or_wrong_key_is_401_and_charges_nothing(
    api: Client, resources: Resources, headers: dict[str, str]
) -> None:
    user = make_user(resources, credits=2)

    resp = api.post("/v1/jobs", json=pose12_body(), headers=headers)

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert resources.accounts.balance(user.user_id) == 2
    assert count(resources, jobs) == 0


def test_another_users_job_is_404(api: Client, resources: Resources) -> None:
    owner, other = make_user(resources, 2, phone="1"), make_user(resources, 2, phone="2")
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(owner)).json()["id"]

    resp = api.get(f"/v1/jobs/{job_id}", headers=auth(other))

    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert api.get(f"/v1/jobs/{job_id}", headers=auth(owner)).status_code == 200
    assert resources.accounts.balance(other.user_id) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (pose12_body(scene="beach"), "input.scene"),
        (pose12_body(category=3), "input.category"),
        ({"kind": "model_pose12", "input": {"image_url": "https://x.test/a.png", "scene": "street"}}, "input.category"),
        (pose12_body(image_url="ftp://x.test/a.png"), "input.image_url"),
        (pose12_body(image_url=""), "input.image_url"),
        (pose12_body(colour="red"), "input.colour"),
        ({"kind": "hologram", "input": {}}, "kind"),
        ({"kind": "model_pose12"}, "input"),
        ({"kind": "model_pose12", "input": [1]}, "input"),
    ],
)
def test_malformed_body_is_422_naming_the_field(
    api: Client, resources: Resources, body: dict[str, object], field: str
) -> None:
    user = make_user(resources, credits=2)

    resp = api.post("/v1/jobs", json=body, headers=auth(user))

    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["field"] == field
    assert resources.accounts.balance(user.user_id) == 2
    assert count(resources, credit_ledger) == 1  # the grant only


def test_list_is_newest_first_filtered_and_paged(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=5)
    ids = [api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"] for _ in range(5)]
    resources.jobs.move(ids[0], JobStatus.QUEUED, JobStatus.CANCELLED, now=resources.jobs.get(ids[0]).created_at)  # type: ignore[union-attr]

    first = api.get("/v1/jobs", params={"limit": 3}, headers=auth(user)).json()
    second = api.get("/v1/jobs", params={"limit": 3, "cursor": first["next_cursor"]}, headers=auth(user)).json()
    cancelled = api.get("/v1/jobs", params={"status": "cancelled"}, headers=auth(user)).json()

    assert [j["id"] for j in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]


def test_list_rejects_an_unknown_status(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1)

    resp = api.get("/v1/jobs", params={"status": "exploded"}, headers=auth(user))

    assert resp.status_code in (400, 422)
    assert resp.json()["error"]["details"]["field"] == "status"


def test_health_readiness_schema_and_metrics(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1)
    api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"ready": True, "checks": {"database": True, "redis": True}}
    assert "/v1/jobs" in api.get("/schema/openapi.json").json()["paths"]
    text = api.get("/metrics").text
    assert 'genq_jobs_submitted_total{kind="model_pose12"}' in text
    assert 'genq_semaphore_limit{slot="runninghub:pose12"} 3.0' in text
    assert 'genq_semaphore_in_flight{slot="runninghub:pose12"} 0.0' in text


def test_unknown_route_answers_in_the_error_shape(api: Client) -> None:
    resp = api.get("/v1/nothing-here")

    assert resp.status_code == 404
    assert set(resp.json()["error"]) == {"code", "message", "details"}


def test_an_external_id_finds_its_job_and_names_one_job_per_user(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=3, phone="13800000001")
    other = make_user(resources, credits=1, phone="13800000002")
    body = {**pose12_body(), "external_id": "sku-42/front"}

    first = api.post("/v1/jobs", json=body, headers=auth(user))
    again = api.post("/v1/jobs", json=body, headers=auth(user))
    theirs = api.post("/v1/jobs", json=body, headers=auth(other))
    api.post("/v1/jobs", json=pose12_body(), headers=auth(user))
    found = api.get("/v1/jobs", params={"external_id": "sku-42/front"}, headers=auth(user)).json()["items"]

    assert first.status_code == 202 and first.json()["external_id"] == "sku-42/front"
    assert again.status_code == 409 and again.json()["error"]["details"]["job_id"] == first.json()["id"]
    assert theirs.status_code == 202  # another user's references are their own
    assert [job["id"] for job in found] == [first.json()["id"]]
    assert resources.accounts.balance(user.user_id) == 1  # the refused one charged nothing


def test_not_ready_is_a_503_in_the_error_shape_naming_what_does_not_answer(
    api: Client, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "redis_ok", lambda: False)

    answer = api.get("/readyz")

    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    error = answer.json()["error"]
    assert error["code"] == "unavailable" and "redis" in error["message"]
    assert error["details"] == {"checks": {"database": True, "redis": False}}
