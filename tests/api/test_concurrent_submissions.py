"""Concurrent submissions over real HTTP: the balance never goes below zero, nothing is lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dramatiq
import httpx

from api.app import create_app
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
