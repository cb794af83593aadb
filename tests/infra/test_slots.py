"""Vendor slots are leases in a real Redis: a limit holds, a dead holder's slot comes back."""

from __future__ import annotations

import time

import redis

from infra.slots import Slots


def test_limit_holds_and_release_frees_a_slot(redis_client: redis.Redis) -> None:
    slots = Slots(redis_client, ttl_s=30)

    taken = [slots.acquire("kie:sora-2", f"job{i}", limit=2) for i in range(3)]
    slots.release("kie:sora-2", "job0")

    assert taken == [True, True, False]
    assert slots.acquire("kie:sora-2", "job2", limit=2)
    assert sorted(slots.holders("kie:sora-2")) == ["job1", "job2"]


def test_the_same_holder_retaking_its_slot_does_not_count_twice(redis_client: redis.Redis) -> None:
    slots = Slots(redis_client, ttl_s=30)

    assert slots.acquire("rh:pose12", "job1", limit=1)
    assert slots.acquire("rh:pose12", "job1", limit=1)
    assert slots.in_flight("rh:pose12") == 1


def test_a_dead_holders_lease_expires_and_the_slot_comes_back(redis_client: redis.Redis) -> None:
    slots = Slots(redis_client, ttl_s=0.2)
    slots.acquire("rh:pose12", "crashed-worker-job", limit=1)

    blocked = slots.acquire("rh:pose12", "job2", limit=1)
    time.sleep(0.3)  # the lease runs out; nobody released it

    assert blocked is False
    assert slots.acquire("rh:pose12", "job2", limit=1)
    assert slots.holders("rh:pose12") == ["job2"]


def test_renewing_keeps_a_live_holders_slot(redis_client: redis.Redis) -> None:
    slots = Slots(redis_client, ttl_s=0.3)
    slots.acquire("rh:pose12", "job1", limit=1)

    for _ in range(4):
        time.sleep(0.1)
        assert slots.renew("rh:pose12", "job1")

    assert not slots.acquire("rh:pose12", "job2", limit=1)


def test_a_lowered_limit_applies_to_the_next_acquire(redis_client: redis.Redis) -> None:
    slots = Slots(redis_client, ttl_s=30)
    slots.acquire("rh:pose12", "job1", limit=3)
    slots.acquire("rh:pose12", "job2", limit=3)

    assert not slots.acquire("rh:pose12", "job3", limit=2)
    assert slots.in_flight("rh:pose12") == 2
