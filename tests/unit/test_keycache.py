"""The API-key cache: kept for a time, bounded in size (least recently used out), forgotten on demand."""

from __future__ import annotations

from collections.abc import Callable

from infra.accounts import KeyOwner
from infra.keycache import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Table:
    """The keys table as the cache sees it: live keys by key, and every lookup made."""

    def __init__(self, **owners: str) -> None:
        self.live = {key: KeyOwner(user_id, None) for key, user_id in owners.items()}
        self.lookups: list[str] = []
        self.during_lookup: Callable[[], None] = lambda: None

    def __call__(self, api_key: str) -> KeyOwner | None:
        self.lookups.append(api_key)
        self.during_lookup()
        return self.live.get(api_key)


def test_the_least_recently_used_key_goes_first_when_the_cache_is_full() -> None:
    table = Table(k1="u1", k2="u2", k3="u3")
    cache = KeyCache(table, ttl_s=5.0, max_entries=2, clock=Clock())
    cache.owner("k1"), cache.owner("k2"), cache.owner("k1")

    cache.owner("k3")
    cache.owner("k1"), cache.owner("k2")

    assert len(cache) == 2
    assert table.lookups == ["k1", "k2", "k3", "k2"]  # k1 was used after k2: k2 went, k1 stayed


def test_a_key_is_looked_up_again_once_its_time_is_up() -> None:
    table, clock = Table(k1="u1"), Clock()
    cache = KeyCache(table, ttl_s=5.0, clock=clock)
    cache.owner("k1")

    clock.now = 4.99
    cache.owner("k1")
    clock.now = 5.0
    cache.owner("k1")

    assert table.lookups == ["k1", "k1"]


def test_an_unknown_key_is_not_kept() -> None:
    table = Table()
    cache = KeyCache(table, ttl_s=5.0, clock=Clock())
    refused = cache.owner("k1")

    table.live["k1"] = KeyOwner("u1", None)
    found = cache.owner("k1")

    assert refused is None and found == KeyOwner("u1", None)


def test_forgetting_a_user_drops_their_keys_only() -> None:
    table = Table(k1="u1", k2="u1", k3="u2")
    cache = KeyCache(table, ttl_s=5.0, clock=Clock())
    for key in ("k1", "k2", "k3"):
        cache.owner(key)

    cache.forget_user("u1")
    for key in ("k1", "k2", "k3"):
        cache.owner(key)

    assert table.lookups == ["k1", "k2", "k3", "k1", "k2"]


def test_a_lookup_overlapping_a_forget_is_answered_but_not_kept() -> None:
    """It may have read the key before the revocation committed: keeping it would outlive the forget."""
    table = Table(k1="u1")
    cache = KeyCache(table, ttl_s=5.0, clock=Clock())
    table.during_lookup = lambda: cache.forget_user("u1")

    first = cache.owner("k1")
    table.during_lookup = lambda: None
    cache.owner("k1")

    assert first == KeyOwner("u1", None) and table.lookups == ["k1", "k1"]


def test_a_zero_ttl_keeps_nothing() -> None:
    table = Table(k1="u1")
    cache = KeyCache(table, ttl_s=0.0, clock=Clock())

    cache.owner("k1"), cache.owner("k1")

    assert table.lookups == ["k1", "k1"] and len(cache) == 0
