"""Webhooks: each subscribed event delivered, signed per Standard Webhooks, retried until taken,
fenced against duplicates, re-driven when its message is lost, given up after the retry window."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from typing import Any

import dramatiq
from genq_client import verify_webhook
from litestar import Litestar
from litestar.testing import TestClient

from infra.resources import Resources
from tests.support import Hook, HookReceiver, auth, make_user, pose12_body, terminal_job, wait_for
from workers import maintenance, webhooks
from workers.runtime import Runtime

Client = TestClient[Litestar]


def signed_by(secret: str, hook: Hook) -> bool:
    """The receiver's check, written from the specification (not with genq's code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{hook.headers['webhook-id']}.{hook.headers['webhook-timestamp']}.".encode() + hook.body
    expected = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return expected in hook.headers["webhook-signature"].split(" ")


def hooked(**hook: str) -> dict[str, object]:
    return {**pose12_body(), **hook}


def deliveries(api: Client, user_headers: dict[str, str], job_id: str) -> list[dict[str, object]]:
    resp = api.get(f"/v1/jobs/{job_id}/deliveries", headers=user_headers)
    assert resp.status_code == 200
    found: list[dict[str, object]] = resp.json()
    return found


def settled(api: Client, user_headers: dict[str, str], job_id: str) -> list[dict[str, Any]] | None:
    """The job's deliveries once every one of them has been taken, else None."""
    rows: list[dict[str, Any]] = deliveries(api, user_headers, job_id)
    return rows if rows and all(row["status"] == "delivered" for row in rows) else None


def test_every_subscribed_event_is_delivered_once_and_signed(
    api: Client, resources: Resources, worker: dramatiq.Worker, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=1)
    body = hooked(webhook_url=hooks.url("/all"), webhook_events="all")
    job = terminal_job(resources, api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"])
    events = [f"job.{e.to_status}" for e in resources.jobs.history(job.id)]
    secret = api.get("/v1/webhooks/secret", headers=auth(user)).json()["secret"]

    got = wait_for(lambda: h if len(h := hooks.received("/all")) >= len(events) else None, what="all events")
    rows = wait_for(lambda: settled(api, auth(user), job.id), what="every delivery settled")

    assert sorted(h.json()["type"] for h in got) == sorted(events)
    assert len({h.headers["webhook-id"] for h in got}) == len(events) == len(rows)
    assert all(signed_by(secret, h) for h in got)
    final = next(h.json() for h in got if h.json()["type"] == "job.succeeded")
    assert final["data"]["id"] == job.id and final["data"]["status"] == "succeeded" and final["data"]["results"]
    assert all(len(r["attempts"]) == 1 for r in rows)  # type: ignore[arg-type]


def test_by_default_only_the_terminal_event_is_delivered(
    api: Client, resources: Resources, worker: dramatiq.Worker, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=1)
    body = hooked(webhook_url=hooks.url("/done"))
    job = terminal_job(resources, api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"])

    [hook] = wait_for(lambda: hooks.received("/done"), what="the terminal event")

    assert hook.json()["type"] == "job.succeeded"
    assert [d["event"] for d in deliveries(api, auth(user), job.id)] == ["job.succeeded"]


def test_a_receiver_that_answers_500_twice_gets_the_third_attempt(
    api: Client, resources: Resources, worker: dramatiq.Worker, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=1)
    hooks.fail("/flaky", 2)
    job_id = api.post("/v1/jobs", json=hooked(webhook_url=hooks.url("/flaky")), headers=auth(user)).json()["id"]

    [row] = wait_for(lambda: settled(api, auth(user), job_id), what="the delivery to succeed")
    tries = hooks.received("/flaky")

    assert [a["status_code"] for a in row["attempts"]] == [500, 500, 204]  # type: ignore[attr-defined]
    assert [t.answered for t in tries] == [500, 500, 204]
    assert len({t.headers["webhook-id"] for t in tries}) == 1 and len({t.body for t in tries}) == 1


def test_after_a_rotation_both_secrets_sign_and_either_verifies(
    api: Client, resources: Resources, worker: dramatiq.Worker, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=1)
    old = api.get("/v1/webhooks/secret", headers=auth(user)).json()["secret"]
    rotated = api.post("/v1/webhooks/secret/rotate", headers=auth(user)).json()
    api.post("/v1/jobs", json=hooked(webhook_url=hooks.url("/rotated")), headers=auth(user))

    [hook] = wait_for(lambda: hooks.received("/rotated"), what="the delivery")

    assert rotated["secret"] != old and rotated["previous"] == old and rotated["previous_until"]
    assert len(hook.headers["webhook-signature"].split(" ")) == 2
    assert signed_by(rotated["secret"], hook) and signed_by(old, hook)
    assert verify_webhook(hook.headers, hook.body, old)["type"] == "job.succeeded"  # the Python client's check
    assert not signed_by("whsec_" + base64.b64encode(b"k" * 32).decode(), hook)


def test_a_private_target_is_refused_at_submit_and_nothing_is_charged(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=5)
    for target in ("http://10.1.2.3/hook", "http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://x/y"):
        resp = api.post("/v1/jobs", json=hooked(webhook_url=target), headers=auth(user))
        assert resp.status_code == 422, target
        assert resp.json()["error"]["details"]["field"] == "webhook_url"
    no_url = api.post("/v1/jobs", json=hooked(webhook_events="all"), headers=auth(user))

    assert no_url.status_code == 422 and no_url.json()["error"]["details"]["field"] == "webhook_events"
    assert resources.accounts.balance(user.user_id) == 5


def test_a_duplicate_message_sends_nothing_and_a_lost_one_is_redriven(
    api: Client, resources: Resources, runtime_: Runtime, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=1)
    body = hooked(webhook_url=hooks.url("/fenced"), webhook_events="all")
    job_id = api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"]  # no worker: its message waits
    [(first, _)] = resources.webhooks.for_job(job_id)

    hooks.fail("/fenced", 1)
    webhooks.deliver.fn(first.id, first.fence)  # fails: a retry is due at once
    webhooks.deliver.fn(first.id, first.fence)  # the same message again: stale
    after_try = resources.webhooks.get(first.id)
    assert after_try is not None and after_try.status == "pending" and len(hooks.received("/fenced")) == 1

    later = runtime_.now() + timedelta(seconds=maintenance.WEBHOOK_GRACE_S + 1)
    runtime_.clock = lambda: later  # the retry's message was lost: maintenance finds it overdue
    assert maintenance.redrive_webhooks(runtime_) == 1
    webhooks.deliver.fn(first.id, after_try.fence)  # the lost message turns up: stale now
    redriven = resources.webhooks.get(first.id)
    assert redriven is not None and len(hooks.received("/fenced")) == 1
    webhooks.deliver.fn(first.id, redriven.fence)

    [(done, tries)] = resources.webhooks.for_job(job_id)
    assert done.status == "delivered" and [t.status_code for t in tries] == [500, 204]
    assert len(hooks.received("/fenced")) == 2


def test_a_delivery_is_given_up_after_the_retry_window(
    api: Client, resources: Resources, runtime_: Runtime, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=1)
    body = hooked(webhook_url=hooks.url("/down"), webhook_events="all")
    job_id = api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"]
    [(delivery, _)] = resources.webhooks.for_job(job_id)
    hooks.fail("/down", 2, status=503)

    webhooks.deliver.fn(delivery.id, delivery.fence)
    retry = resources.webhooks.get(delivery.id)
    assert retry is not None and retry.status == "pending"
    later = delivery.created_at + timedelta(seconds=runtime_.settings.webhook_retry_for_s + 1)
    runtime_.clock = lambda: later
    webhooks.deliver.fn(delivery.id, retry.fence)

    [(ended, tries)] = resources.webhooks.for_job(job_id)
    assert ended.status == "failed" and [t.status_code for t in tries] == [503, 503]
    assert maintenance.redrive_webhooks(runtime_) == 0


def test_a_keys_default_webhook_serves_the_jobs_that_name_none(
    api: Client, resources: Resources, worker: dramatiq.Worker, hooks: HookReceiver
) -> None:
    user = make_user(resources, credits=2)
    made = api.post("/v1/keys", json={"webhook_url": hooks.url("/key"), "webhook_events": "all"}, headers=auth(user))
    key_headers = {"Authorization": f"Bearer {made.json()['api_key']}"}
    private = api.post("/v1/keys", json={"webhook_url": "http://10.0.0.1/hook"}, headers=auth(user))
    bare = api.post("/v1/keys", headers=auth(user))

    by_key = api.post("/v1/jobs", json=pose12_body(), headers=key_headers).json()
    own = api.post("/v1/jobs", json=hooked(webhook_url=hooks.url("/own")), headers=key_headers).json()
    terminal_job(resources, by_key["id"])
    terminal_job(resources, own["id"])

    assert made.status_code == 201 and made.json()["webhook_url"] == hooks.url("/key")
    assert private.status_code == 422 and private.json()["error"]["details"]["field"] == "webhook_url"
    assert bare.status_code == 201 and bare.json()["webhook_url"] is None
    assert (by_key["webhook_url"], by_key["webhook_events"]) == (hooks.url("/key"), "all")
    assert (own["webhook_url"], own["webhook_events"]) == (hooks.url("/own"), "completed")
    assert [h.json()["type"] for h in wait_for(lambda: hooks.received("/own"))] == ["job.succeeded"]
    events = [f"job.{e.to_status}" for e in resources.jobs.history(by_key["id"])]
    wait_for(lambda: len(hooks.received("/key")) == len(events), what="every event of the key's job")
    assert sorted(h.json()["type"] for h in hooks.received("/key")) == sorted(events)
