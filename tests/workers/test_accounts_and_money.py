"""Accounts and money: phone login, plans, verified payments, lapse, uploads, rate limits.

The payment simulators are the senders: their notifications are delivered to the API (a Litestar
TestClient over the real database) when the test ticks them, as WeChat Pay and Alipay would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select, update

from api.app import create_app
from api.payments import Channels
from domain.jobs import JobStatus
from infra.db import orders, users
from infra.resources import Resources
from tests.support import (
    GARMENT,
    SAMPLES,
    auth,
    make_user,
    payment_transport,
    pose12_body,
    terminal_job,
    wait_for,
    with_payments,
)
from vendors.sim.alipay import AlipaySim
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.tencent_sms import SmsSim
from vendors.sim.wechatpay import WechatPaySim

Client = TestClient[Litestar]


@dataclass
class Money:
    api: Client
    wechat: WechatPaySim
    alipay: AlipaySim
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # (channel, status, body) per delivery
    forward: bool = True
    lost: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)  # what did not arrive

    def deliver(self, channel: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if not self.forward:
            self.lost.append((url, headers, body))
            return 0, ""  # the notification is lost on the way
        resp = self.api.post(httpx.URL(url).path, content=body, headers=headers)
        self.answers.append((channel, resp.status_code, resp.text))
        return resp.status_code, resp.text


@pytest.fixture
def money(resources: Resources, broker: dramatiq.Broker) -> Iterator[Money]:
    holder: dict[str, Money] = {}
    wechat = WechatPaySim(
        mchid="1900000109", appid="wx8888888888888888", seed=3,
        deliver=lambda url, headers, body: holder["m"].deliver("wechat", url, dict(headers), body),
    )  # fmt: skip
    ali = AlipaySim(
        app_id="2021000000000001", seed=3,
        deliver=lambda url, headers, body: holder["m"].deliver("alipay", url, dict(headers), body),
    )  # fmt: skip
    resources.settings = with_payments(resources.settings, wechat, ali)
    channels = Channels.from_settings(resources.settings, transport=payment_transport(wechat, ali))
    with TestClient(app=create_app(resources, channels=channels)) as client:
        holder["m"] = Money(client, wechat, ali)
        yield holder["m"]


def buy(money: Money, headers: dict[str, str], channel: str, plan: str = "pro") -> dict[str, Any]:
    resp = money.api.post("/v1/orders", json={"plan": plan, "channel": channel}, headers=headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def pay(money: Money, order: dict[str, Any]) -> None:
    if order["channel"] == "wechat":
        money.wechat.pay(order["id"])
        money.wechat.tick()
    else:
        money.alipay.pay(order["id"])
        money.alipay.tick()


def membership(money: Money, headers: dict[str, str]) -> dict[str, Any]:
    return dict(money.api.get("/v1/membership", headers=headers).json())


# --- b) c) payments ------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_paid_order_grants_the_plan_and_membership(money: Money, resources: Resources, channel: str) -> None:
    user = make_user(resources, credits=0)

    order = buy(money, auth(user), channel)
    pay(money, order)

    assert order["status"] == "pending" and order["payment"]
    state = membership(money, auth(user))
    assert state["member"] is True and state["plan"] == "pro"
    assert state["credits"] == 100 and state["plan_credits"] == 100
    until = datetime.fromisoformat(state["member_until"])
    assert timedelta(days=29, hours=23) < until - datetime.now(UTC) <= timedelta(days=30)
    assert money.api.get(f"/v1/orders/{order['id']}", headers=auth(user)).json()["status"] == "paid"
    assert resources.accounts.ledger(user.user_id) == [(None, "grant", 100)]


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_the_same_notification_five_times_credits_once(money: Money, resources: Resources, channel: str) -> None:
    (money.wechat if channel == "wechat" else money.alipay).configure(duplicates=4)
    user = make_user(resources, credits=0)

    pay(money, buy(money, auth(user), channel))

    assert len([a for a in money.answers if a[0] == channel]) == 5
    assert resources.accounts.balance(user.user_id) == 100
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)] == ["grant"]


@pytest.mark.parametrize(
    ("channel", "knobs", "status"),
    [
        ("wechat", {"tamper_signature": True}, 401),
        ("wechat", {"wrong_serial": True}, 401),
        ("wechat", {"stale_timestamp": 360}, 401),
        ("wechat", {"amount_override": 1}, 400),
        ("alipay", {"tamper_signature": True}, 400),
        ("alipay", {"amount_override": "0.01"}, 400),
    ],
    ids=[
        "wechat-bad-signature",
        "wechat-unknown-serial",
        "wechat-stale",
        "wechat-amount",
        "alipay-bad-signature",
        "alipay-amount",
    ],
)
def test_a_forged_stale_or_mismatched_notification_credits_nothing(
    money: Money, resources: Resources, channel: str, knobs: dict[str, Any], status: int
) -> None:
    (money.wechat if channel == "wechat" else money.alipay).configure(retry_schedule_s=[], **knobs)
    user = make_user(resources, credits=0)

    order = buy(money, auth(user), channel)
    pay(money, order)

    assert [a[1] for a in money.answers] == [status]
    assert resources.accounts.balance(user.user_id) == 0
    assert money.api.get(f"/v1/orders/{order['id']}", headers=auth(user)).json()["status"] == "pending"
    assert membership(money, auth(user))["member"] is False


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_lost_notification_is_recovered_by_refresh_without_a_second_grant(
    money: Money, resources: Resources, channel: str
) -> None:
    user = make_user(resources, credits=0)
    order = buy(money, auth(user), channel)
    money.forward = False
    pay(money, order)  # paid at the channel; the notification never arrives

    refreshed = money.api.post(f"/v1/orders/{order['id']}/refresh", headers=auth(user)).json()
    money.forward = True
    (money.wechat if channel == "wechat" else money.alipay).configure(retry_schedule_s=[0])
    late = money.wechat if channel == "wechat" else money.alipay
    late.tick()  # ... and then it arrives after all

    assert refreshed["status"] == "paid"
    assert resources.accounts.balance(user.user_id) == 100
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)] == ["grant"]


def test_buying_again_extends_the_membership(money: Money, resources: Resources) -> None:
    user = make_user(resources, credits=0)
    pay(money, buy(money, auth(user), "wechat"))
    first = datetime.fromisoformat(membership(money, auth(user))["member_until"])

    pay(money, buy(money, auth(user), "alipay"))
    second = membership(money, auth(user))

    assert datetime.fromisoformat(second["member_until"]) - first == timedelta(days=30)
    assert second["credits"] == 200


# --- d) lapse -------------------------------------------------------------------------------------


def test_after_lapse_plan_credits_expire_and_new_jobs_are_402(money: Money, resources: Resources) -> None:
    user = make_user(resources, credits=0)
    pay(money, buy(money, auth(user), "wechat"))
    assert money.api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).status_code == 202
    with resources.engine.begin() as conn:  # thirty days pass
        conn.execute(update(users).where(users.c.id == user.user_id).values(member_until=datetime.now(UTC)))

    state = membership(money, auth(user))
    resp = money.api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert state["member"] is False and state["credits"] == 0 and state["plan_credits"] == 0
    assert resp.status_code == 402
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)] == ["grant", "charge", "expire"]
    assert resources.accounts.ledger_sum(user.user_id) == resources.accounts.balance(user.user_id) == 0


def test_the_daily_sweep_expires_lapsed_memberships(money: Money, resources: Resources, runtime_: Any) -> None:
    from workers import accounts

    user = make_user(resources, credits=0)
    pay(money, buy(money, auth(user), "alipay"))
    with resources.engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user.user_id).values(member_until=datetime.now(UTC)))

    assert accounts.sweep_memberships(runtime_) == 1
    assert resources.accounts.balance(user.user_id) == 0
    assert accounts.sweep_memberships(runtime_) == 0


# --- f) uploads -----------------------------------------------------------------------------------


def test_the_upload_grant_is_signed_for_the_callers_prefix_type_and_size(money: Money, resources: Resources) -> None:
    user = make_user(resources, credits=1)

    grant = money.api.post("/v1/uploads", json={"content_type": "image/png"}, headers=auth(user)).json()

    policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
    conditions = policy["conditions"]
    assert ["starts-with", "$key", f"uploads/{user.user_id}/"] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 1, 8 * 1024 * 1024] in conditions
    assert grant["key"].startswith(f"uploads/{user.user_id}/")


def test_an_uploaded_image_runs_a_job_and_another_users_key_is_refused(
    money: Money, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim
) -> None:
    owner, other = make_user(resources, credits=1, phone="1"), make_user(resources, credits=1, phone="2")
    grant = money.api.post("/v1/uploads", json={"content_type": "image/png"}, headers=auth(owner)).json()
    png = httpx.get(GARMENT).content
    upload = httpx.post(grant["url"], data=grant["fields"], files={"file": ("g.png", png, "image/png")})
    assert upload.status_code in (200, 204), upload.text
    body = {"kind": "model_pose12", "input": {"upload_key": grant["key"], "scene": "studio", "category": "coat"}}

    stolen = money.api.post("/v1/jobs", json=body, headers=auth(other))
    mine = money.api.post("/v1/jobs", json=body, headers=auth(owner))
    job = terminal_job(resources, mine.json()["id"])

    assert stolen.status_code == 422 and stolen.json()["error"]["details"]["field"] == "input.upload_key"
    assert resources.accounts.balance(other.user_id) == 1
    assert job.status is JobStatus.SUCCEEDED


# --- g) rate limits -------------------------------------------------------------------------------


def test_the_request_past_the_limit_is_429_with_retry_after_and_others_go_on(
    money: Money, resources: Resources
) -> None:
    resources.settings = resources.settings.with_(rate_jobs_per_minute=3)
    busy, calm = make_user(resources, credits=10, phone="1"), make_user(resources, credits=10, phone="2")

    statuses = [money.api.post("/v1/jobs", json=pose12_body(), headers=auth(busy)).status_code for _ in range(4)]
    blocked = money.api.post("/v1/jobs", json=pose12_body(), headers=auth(busy))
    other = money.api.post("/v1/jobs", json=pose12_body(), headers=auth(calm))

    assert statuses == [202, 202, 202, 429]
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert other.status_code == 202
    assert resources.accounts.balance(busy.user_id) == 7


# --- a) phone login ------------------------------------------------------------------------------


def login_code(money: Money, sms_sim: SmsSim, phone: str) -> str:
    assert money.api.post("/v1/auth/sms-code", json={"phone": phone}).status_code == 202
    return wait_for(lambda: sms_sim.last_code(phone), what="the SMS")


def test_a_code_from_the_sms_logs_in_and_the_token_submits_a_job(
    money: Money, resources: Resources, worker: dramatiq.Worker, sms_sim: SmsSim
) -> None:
    code = login_code(money, sms_sim, "+8613800138000")

    tokens = money.api.post("/v1/auth/login", json={"phone": "13800138000", "code": code}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    reused = money.api.post("/v1/auth/login", json={"phone": "+8613800138000", "code": code})
    refreshed = money.api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    user = resources.accounts.by_phone("+8613800138000")
    assert user is not None
    with resources.engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user.id).values(balance=1))
    job = money.api.post("/v1/jobs", json=pose12_body(), headers=headers)

    assert reused.status_code == 401
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != tokens["access_token"]
    assert job.status_code == 202
    assert money.api.get("/v1/jobs", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}).status_code == 401


def test_five_wrong_codes_lock_the_phone(
    money: Money, resources: Resources, worker: dramatiq.Worker, sms_sim: SmsSim
) -> None:
    phone = "+8613900139000"
    code = login_code(money, sms_sim, phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    answers = [money.api.post("/v1/auth/login", json={"phone": phone, "code": wrong}).status_code for _ in range(5)]
    locked = money.api.post("/v1/auth/login", json={"phone": phone, "code": code})

    assert answers == [401] * 5
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


# --- h) the whole first loop ----------------------------------------------------------------------


def test_the_first_loop_login_buy_pay_run_and_refund(
    money: Money, resources: Resources, worker: dramatiq.Worker, sms_sim: SmsSim, rh_sim: RunningHubSim
) -> None:
    phone = "+8613700137000"
    tokens = money.api.post("/v1/auth/login", json={"phone": phone, "code": login_code(money, sms_sim, phone)}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    pay(money, buy(money, headers, "wechat"))
    good = money.api.post("/v1/jobs", json=pose12_body(), headers=headers).json()
    done = terminal_job(resources, good["id"])
    rh_sim.configure(job_fail_rate=1.0)
    bad = money.api.post("/v1/jobs", json=pose12_body(image_url=f"{SAMPLES}/600x800.png"), headers=headers).json()
    failed = terminal_job(resources, bad["id"])
    user = resources.accounts.by_phone(phone)
    assert user is not None
    wait_for(lambda: resources.accounts.balance(user.id) == 99, what="the refund")

    assert done.status is JobStatus.SUCCEEDED and len(done.results) == 12
    assert failed.status is JobStatus.FAILED
    assert [kind for _, kind, _ in resources.accounts.ledger(user.id)] == ["grant", "charge", "charge", "refund"]
    assert resources.accounts.ledger_sum(user.id) == 99
    assert membership(money, headers)["member"] is True


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_notification_whose_body_was_tampered_with_is_refused(
    money: Money, resources: Resources, channel: str
) -> None:
    user = make_user(resources, credits=0)
    order = buy(money, auth(user), channel)
    (money.wechat if channel == "wechat" else money.alipay).configure(retry_schedule_s=[])
    money.forward = False  # hold what the channel sent, then deliver it altered
    pay(money, order)
    url, headers, body = money.lost[0]

    if channel == "wechat":
        forged = body.replace(b'"summary"', b'"summary_"')  # any byte changed breaks the signature
    else:
        forged = body.replace(b"total_amount=99.00", b"total_amount=0.01")
    resp = money.api.post(httpx.URL(url).path, content=forged, headers=headers)

    assert forged != body
    assert resp.status_code in (400, 401)
    assert resources.accounts.balance(user.user_id) == 0


def test_an_amount_mismatch_is_refused_and_logged(money: Money, resources: Resources) -> None:
    from structlog.testing import capture_logs

    money.wechat.configure(retry_schedule_s=[], amount_override=1)
    user = make_user(resources, credits=0)
    order = buy(money, auth(user), "wechat")

    with capture_logs() as logs:
        pay(money, order)

    assert [a[1] for a in money.answers] == [400]
    assert any(e["event"] == "payment_amount_mismatch" and e["order_id"] == order["id"] for e in logs)
    assert resources.accounts.balance(user.user_id) == 0


def test_auth_endpoints_are_rate_limited_per_ip(money: Money, resources: Resources) -> None:
    resources.settings = resources.settings.with_(rate_auth_per_minute_ip=3)

    statuses = [
        money.api.post("/v1/auth/login", json={"phone": f"1380013800{i}", "code": "123456"}).status_code
        for i in range(4)
    ]
    blocked = money.api.post("/v1/auth/sms-code", json={"phone": "13800138009"})

    assert statuses == [401, 401, 401, 429]
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("answer", [httpx.Response(503), httpx.Response(200, json={"code_url": "weixin://unsigned"})])
def test_a_channel_without_a_usable_answer_is_502_and_the_order_fails(
    money: Money, resources: Resources, answer: httpx.Response
) -> None:
    broken = Channels.from_settings(resources.settings, transport=httpx.MockTransport(lambda _: answer))
    user = make_user(resources, credits=0)
    with TestClient(app=create_app(resources, channels=broken)) as api:
        resp = api.post("/v1/orders", json={"plan": "pro", "channel": "wechat"}, headers=auth(user))

    assert (resp.status_code, resp.json()["error"]["code"]) == (502, "payment_channel_unavailable")
    with resources.engine.connect() as conn:
        statuses = list(conn.execute(select(orders.c.status).where(orders.c.user_id == user.user_id)).scalars())
    assert statuses == ["failed"]
