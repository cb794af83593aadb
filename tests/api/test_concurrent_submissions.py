"""Concurrent submissions over real HTTP: the balance never goes below zero, nothing is lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Barrier

import dramatiq
import httpx

from api.app import create_app
from domain.plans import parse_plans
from infra.embedded import free_port
from infra.resources import Resources
from infra.serving import ServerThread
from tests.support import auth, make_user, pose12_body


def test_twenty_concurrent_submissions_with_ten_credits(resources: Resources, broker: dramatiq.Broker) -> None:
    user = make_user(resources, credits=10)
    server = ServerThread(create_app(resources), host="127.0.0.1", port=free_port()).start()

    def submit(_: int) -> int:
        return httpx.post(f"{server.url}/v1/jobs", json=pose12_body(), headers=auth(user), timeout=30).status_code

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(submit, range(20)))
    finally:
        server.stop()

    assert sorted(statuses) == [202] * 10 + [402] * 10
    assert resources.accounts.balance(user.user_id) == 0
    assert resources.accounts.ledger_sum(user.user_id) == 0
    charges = [row for row in resources.accounts.ledger(user.user_id) if row[1] == "charge"]
    assert len(charges) == 10 and len({job_id for job_id, _, _ in charges}) == 10


def test_twenty_concurrent_submissions_right_after_a_lapse_expire_the_plan_credits_once(
    resources: Resources, broker: dramatiq.Broker
) -> None:
    user = make_user(resources, credits=100)
    pro = parse_plans(resources.settings.plans)["pro"]
    bought = datetime.now(UTC) - timedelta(days=31)  # the membership ran out a day ago
    order = resources.membership.create_order(user.user_id, pro, "wechat", now=bought)
    resources.membership.paid(
        order.id, channel="wechat", transaction_id=order.id, amount_fen=pro.price_fen, now=bought, days=30
    )
    server = ServerThread(create_app(resources), host="127.0.0.1", port=free_port()).start()
    barrier = Barrier(20, timeout=10)

    def submit(_: int) -> int:
        barrier.wait()
        return httpx.post(f"{server.url}/v1/jobs", json=pose12_body(), headers=auth(user), timeout=30).status_code

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(submit, range(20)))
    finally:
        server.stop()

    kinds = [kind for _, kind, _ in resources.accounts.ledger(user.user_id)]
    assert statuses == [202] * 20
    assert kinds.count("expire") == 1 and kinds.count("charge") == 20
    assert resources.accounts.balance(user.user_id) == resources.accounts.ledger_sum(user.user_id) == 100 - 20
