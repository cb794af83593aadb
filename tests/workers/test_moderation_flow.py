"""Moderation end to end: the API over real HTTP, every pool, the WeChat and Douyin simulators.

WeChat image verdicts arrive as pushes: the simulator's deliveries are forwarded over HTTP to
the live API's callback endpoint, as WeChat would send them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import httpx
import pytest
import redis

from api.app import create_app
from domain.jobs import JobStatus
from infra.embedded import free_port
from infra.resources import Resources
from infra.serving import ServerThread
from tests.support import GARMENT, SAMPLES, auth, make_user, terminal_job, wait_for
from vendors.sim.wechat import WechatSim
from vendors.wechat_sec import push_signature
from workers import maintenance, moderation
from workers.runtime import Policy, Runtime

Pushes = list[tuple[str, dict[str, str], bytes]]
REJECT_IMAGE = f"{SAMPLES}/512x512.png?tag=sim-reject"
PASS_IMAGE = f"{SAMPLES}/512x512.png?tag=ok"


@pytest.fixture
def audits_on(resources: Resources, runtime_: Runtime) -> None:
    changed = resources.settings.with_(audit_enabled=True, audit_pull_after_s=1.0)
    resources.settings = runtime_.settings = changed
    runtime_.policy = Policy.from_settings(changed)


@pytest.fixture
def live_api(resources: Resources, broker: dramatiq.Broker, audits_on: None) -> Iterator[str]:
    server = ServerThread(create_app(resources), host="127.0.0.1", port=free_port()).start()
    yield server.url
    server.stop()


@pytest.fixture
def forward_pushes(live_api: str, wechat_sim: WechatSim, wechat_pushes: Pushes) -> Iterator[list[int]]:
    """Deliver what the WeChat simulator pushes to the live API; the statuses it answered."""
    answered: list[int] = []
    stop = threading.Event()

    def run() -> None:
        sent = 0
        while not stop.wait(0.05):
            wechat_sim.tick()
            while sent < len(wechat_pushes):
                url, headers, body = wechat_pushes[sent]
                target = httpx.URL(url)
                resp = httpx.post(f"{live_api}{target.path}", params=dict(target.params), headers=headers, content=body)
                answered.append(resp.status_code)
                sent += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield answered
    stop.set()
    thread.join(5)


def submit(api: str, headers: dict[str, str], kind: str, job_input: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{api}/v1/jobs", json={"kind": kind, "input": job_input}, headers=headers, timeout=30)
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def video(prompt: str, image_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": prompt}
    return body | ({"image_url": image_url} if image_url else {})


def test_submit_answers_pending_audit_and_calls_no_platform_during_the_request(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim, forward_pushes: list[int]
) -> None:
    worker.pause()
    user = make_user(resources, credits=15)

    job = submit(live_api, auth(user), "video", video("a calm lake", PASS_IMAGE))
    calls_during_request = list(wechat_sim.calls)
    worker.resume()
    finished = terminal_job(resources, job["id"], timeout_s=30)

    assert job["status"] == "pending_audit"
    assert calls_during_request == []
    assert finished.status is JobStatus.SUCCEEDED
    assert [a.decision for a in resources.audits.for_job(job["id"])] == ["pass", "pass"]
    assert ("pending_audit", "queued") in resources.jobs.events(job["id"])


CASES = [
    ("wechat", "text", "video", video("sim-reject a forbidden scene")),
    ("wechat", "image", "basic_clean", {"image_url": REJECT_IMAGE}),
    ("douyin", "text", "video", video("sim-reject a forbidden scene")),
    ("douyin", "image", "basic_clean", {"image_url": REJECT_IMAGE}),
]


@pytest.mark.parametrize(("platform", "what", "kind", "job_input"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_rejected_input_fails_the_job_and_refunds_it_once(
    live_api: str,
    resources: Resources,
    worker: dramatiq.Worker,
    forward_pushes: list[int],
    platform: str,
    what: str,
    kind: str,
    job_input: dict[str, Any],
) -> None:
    user = make_user(resources, credits=15)
    resources.accounts.set_moderation_platform(user.user_id, platform)

    job = submit(live_api, auth(user), kind, job_input)
    finished = terminal_job(resources, job["id"], timeout_s=30)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 15, what="the refund")

    assert finished.status is JobStatus.AUDIT_FAILED and finished.error_code == "moderation_rejected"
    [audit, *_] = [a for a in resources.audits.for_job(job["id"]) if a.decision == "reject"]
    assert audit.platform == platform and audit.item_kind == what
    assert [k for _, k, _ in resources.accounts.ledger(user.user_id)].count("refund") == 1
    assert resources.jobs.events(job["id"])[-1] == ("pending_audit", "audit_failed")


@pytest.mark.parametrize("platform", ["wechat", "douyin"])
def test_inputs_that_pass_let_the_job_run_on_both_platforms(
    live_api: str, resources: Resources, worker: dramatiq.Worker, forward_pushes: list[int], platform: str
) -> None:
    user = make_user(resources, credits=5)
    resources.accounts.set_moderation_platform(user.user_id, platform)

    job = submit(
        live_api,
        auth(user),
        "model_3d",
        {"version": "3.1", "image_url": GARMENT, "views": [{"view_type": "top", "image_url": PASS_IMAGE}]},
    )
    finished = terminal_job(resources, job["id"], timeout_s=30)

    assert finished.status is JobStatus.SUCCEEDED
    assert {(a.platform, a.item_kind, a.decision) for a in resources.audits.for_job(job["id"])} == {
        (platform, "image", "pass")
    }


@pytest.fixture
def reconciler(runtime_: Runtime, redis_client: redis.Redis, audits_on: None) -> Iterator[None]:
    stop = threading.Event()
    loop = threading.Thread(target=maintenance.run_periodically, args=(stop, redis_client), daemon=True)
    loop.start()
    yield
    stop.set()
    loop.join(5)


def test_a_dropped_push_is_recovered_by_the_pull_fallback(
    live_api: str,
    resources: Resources,
    worker: dramatiq.Worker,
    wechat_sim: WechatSim,
    forward_pushes: list[int],
    reconciler: None,
) -> None:
    wechat_sim.configure(push_drop_rate=1.0)
    user = make_user(resources, credits=1)
    job = submit(live_api, auth(user), "basic_clean", {"image_url": PASS_IMAGE})
    wait_for(lambda: [a for a in resources.audits.for_job(job["id"]) if a.status == "submitted"], what="submission")

    wechat_sim.configure(push_drop_rate=0.0)  # the first push is lost for good; later ones arrive
    finished = terminal_job(resources, job["id"], timeout_s=30)

    assert finished.status is JobStatus.SUCCEEDED
    attempts = resources.audits.for_job(job["id"])
    assert len(attempts) >= 2 and "pass" in [a.decision for a in attempts]


def test_reading_a_job_still_pending_asks_again_but_answers_from_the_database(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim, forward_pushes: list[int]
) -> None:
    wechat_sim.configure(push_drop_rate=1.0)
    user = make_user(resources, credits=1)
    job = submit(live_api, auth(user), "basic_clean", {"image_url": PASS_IMAGE})
    wait_for(lambda: [a for a in resources.audits.for_job(job["id"]) if a.status == "submitted"], what="submission")
    wechat_sim.configure(push_drop_rate=0.0)

    def read() -> str:
        answer = httpx.get(f"{live_api}/v1/jobs/{job['id']}", headers=auth(user)).json()
        return str(answer["status"])

    wait_for(lambda: read() in ("succeeded", "queued", "submitting", "processing", "archiving"), what="re-check")

    assert len(resources.audits.for_job(job["id"])) >= 2


def _pending_image_job(live_api: str, resources: Resources, wechat_sim: WechatSim, user_headers: dict[str, str]) -> str:
    job_id = str(submit(live_api, user_headers, "basic_clean", {"image_url": PASS_IMAGE})["id"])
    wait_for(lambda: [a for a in resources.audits.for_job(job_id) if a.status == "submitted"], what="submission")
    return job_id


def test_a_forged_push_is_refused_and_changes_nothing(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim, wechat_pushes: Pushes
) -> None:
    wechat_sim.configure(push_bad_signature_rate=1.0)
    user = make_user(resources, credits=1)
    job_id = _pending_image_job(live_api, resources, wechat_sim, auth(user))

    wait_for(lambda: wechat_sim.tick() or wechat_pushes, what="the push")
    url, headers, body = wechat_pushes[0]
    target = httpx.URL(url)
    resp = httpx.post(f"{live_api}{target.path}", params=dict(target.params), headers=headers, content=body)

    assert resp.status_code == 401
    job = resources.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING_AUDIT
    assert resources.audits.for_job(job_id)[0].status == "submitted"


def test_the_same_push_five_times_is_one_transition(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim, wechat_pushes: Pushes
) -> None:
    user = make_user(resources, credits=1)
    job_id = _pending_image_job(live_api, resources, wechat_sim, auth(user))
    wait_for(lambda: wechat_sim.tick() or wechat_pushes, what="the push")
    url, headers, body = wechat_pushes[0]
    target = httpx.URL(url)

    answers = [
        httpx.post(f"{live_api}{target.path}", params=dict(target.params), headers=headers, content=body)
        for _ in range(5)
    ]
    terminal_job(resources, job_id, timeout_s=30)

    assert [(a.status_code, a.text) for a in answers] == [(200, "success")] * 5
    assert resources.jobs.events(job_id).count(("pending_audit", "queued")) == 1


def test_an_expired_platform_token_is_refreshed_and_the_check_completes(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim, forward_pushes: list[int]
) -> None:
    user = make_user(resources, credits=30)
    first = submit(live_api, auth(user), "video", video("a quiet harbour"))
    terminal_job(resources, first["id"], timeout_s=30)

    wechat_sim.expire_tokens()
    second = submit(live_api, auth(user), "video", video("a quiet harbour at night"))
    finished = terminal_job(resources, second["id"], timeout_s=30)

    assert finished.status is JobStatus.SUCCEEDED
    assert [c.path for c in wechat_sim.calls].count("/cgi-bin/token") == 2


def _media_check_failure(api: str, resources: Resources, trace_id: str) -> httpx.Response:
    """What WeChat pushes when it could not download the image: errcode -1008, no result."""
    settings, timestamp, nonce = resources.settings, str(int(time.time())), "4815162342"
    body = {
        "ToUserName": "gh_genq", "FromUserName": settings.wechat_openid, "CreateTime": int(timestamp),
        "MsgType": "event", "Event": "wxa_media_check", "appid": settings.wechat_appid, "trace_id": trace_id,
        "version": 2, "errcode": -1008, "errmsg": "download media failed", "detail": [],
    }  # fmt: skip
    signature = push_signature(settings.wechat_push_token.reveal(), timestamp, nonce)
    query = {"signature": signature, "timestamp": timestamp, "nonce": nonce}
    return httpx.post(f"{api}/v1/callbacks/moderation/wechat", params=query, content=json.dumps(body).encode())


def _submitted_attempt(resources: Resources, job_id: str, attempt: int) -> str:
    def probe() -> str | None:
        found = [a for a in resources.audits.for_job(job_id) if a.attempt == attempt and a.status == "submitted"]
        return found[0].platform_task_id if found else None

    return wait_for(probe, what=f"attempt {attempt} to be submitted")


def test_a_media_check_failure_push_is_answered_200_and_the_image_is_checked_again(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim, forward_pushes: list[int]
) -> None:
    wechat_sim.configure(push_drop_rate=1.0)  # the platform's own push for attempt 0 never comes
    user = make_user(resources, credits=1)
    job_id = str(submit(live_api, auth(user), "basic_clean", {"image_url": PASS_IMAGE})["id"])
    trace_id = _submitted_attempt(resources, job_id, 0)
    wechat_sim.configure(push_drop_rate=0.0)

    answer = _media_check_failure(live_api, resources, trace_id)
    finished = terminal_job(resources, job_id, timeout_s=30)

    assert (answer.status_code, answer.text) == (200, "success")
    assert finished.status is JobStatus.SUCCEEDED
    first, *later = resources.audits.for_job(job_id)
    assert (first.attempt, first.status, first.decision) == (0, "decided", "failed")
    assert [a.decision for a in later] == ["pass"]


def test_an_image_whose_check_fails_every_time_fails_the_job_and_refunds_it(
    live_api: str, resources: Resources, worker: dramatiq.Worker, wechat_sim: WechatSim
) -> None:
    wechat_sim.configure(push_drop_rate=1.0)
    user = make_user(resources, credits=1)
    job_id = str(submit(live_api, auth(user), "basic_clean", {"image_url": PASS_IMAGE})["id"])

    answers = [
        _media_check_failure(live_api, resources, _submitted_attempt(resources, job_id, attempt)).status_code
        for attempt in range(moderation.CHECK_ATTEMPTS)
    ]
    finished = terminal_job(resources, job_id, timeout_s=30)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")

    assert answers == [200] * moderation.CHECK_ATTEMPTS
    assert (finished.status, finished.error_code) == (JobStatus.AUDIT_FAILED, "moderation_check_failed")
    assert [a.decision for a in resources.audits.for_job(job_id)] == ["failed"] * moderation.CHECK_ATTEMPTS
