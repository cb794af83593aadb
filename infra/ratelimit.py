"""Rate limits in Redis: fixed windows shared by every API process (SPEC §8: 429 + Retry-After)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

# KEYS[1] counter; ARGV: limit, window_ms. Returns {allowed (1/0), ms until the window resets}.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
if n > tonumber(ARGV[1]) then return {0, ttl} end
return {1, ttl}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int


class RateLimiter:
    def __init__(self, client: redis.Redis, prefix: str = "genq:rate:") -> None:
        self._redis = client
        self._prefix = prefix
        self._hit = client.register_script(_HIT)

    def hit(self, key: str, *, limit: int, window_s: int) -> Verdict:
        """Count one request against `key`; refused once `limit` is passed within the window."""
        allowed, ttl_ms = self._hit(keys=[self._prefix + key], args=[limit, window_s * 1000])
        return Verdict(bool(allowed), max(1, -(-int(ttl_ms) // 1000)))

    def hit_many(self, windows: Sequence[tuple[str, int, int]]) -> list[Verdict]:
        """`hit` for each (key, limit, window_s), in one round trip (a pipeline: each key is its own
        script call, so keys in different cluster slots are fine)."""
        pipe = self._redis.pipeline(transaction=False)
        for key, limit, window_s in windows:
            self._hit(keys=[self._prefix + key], args=[limit, window_s * 1000], client=pipe)
        answers = pipe.execute()
        return [Verdict(bool(allowed), max(1, -(-int(ttl_ms) // 1000))) for allowed, ttl_ms in answers]

    def count(self, key: str) -> int:
        value = self._redis.get(self._prefix + key)
        return int(value) if value is not None else 0

    def clear(self, key: str) -> None:
        self._redis.delete(self._prefix + key)
