"""Per-(vendor, model) concurrency slots: leases in Redis, cluster-wide (SPEC §6).

Each semaphore is a sorted set `genq:slots:{name}` of holder ids (job ids) scored by the lease's
expiry in Redis server time. Taking a slot first drops expired leases, so a slot held by a worker
that died comes back by itself once its lease runs out; live holders renew while the vendor runs
the job. The limit is passed on every call, so a changed limit applies to the next acquire.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis

PREFIX = "genq:slots:"

# KEYS[1] set; ARGV: holder, limit, ttl_ms. 1 = held (new or renewed), 0 = full.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

# Renew whatever the count: the vendor is running this job, so it occupies a slot in truth.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if held and tonumber(held) > now then return 1 end
return 0
"""

_IN_FLIGHT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


@dataclass(frozen=True)
class SlotState:
    name: str
    in_flight: int


class Slots:
    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._in_flight = client.register_script(_IN_FLIGHT)

    def acquire(self, name: str, holder: str, *, limit: int) -> bool:
        """Take (or re-take, for the same holder) a slot; False when all `limit` are held."""
        return bool(self._acquire(keys=[PREFIX + name], args=[holder, max(limit, 0), self._ttl_ms]))

    def renew(self, name: str, holder: str) -> bool:
        """Extend the holder's lease; False if it had lapsed (it is held again all the same)."""
        return bool(self._renew(keys=[PREFIX + name], args=[holder, self._ttl_ms]))

    def release(self, name: str, holder: str) -> None:
        self._redis.zrem(PREFIX + name, holder)

    def in_flight(self, name: str) -> int:
        return int(self._in_flight(keys=[PREFIX + name]))

    def holders(self, name: str) -> list[str]:
        return [h.decode() if isinstance(h, bytes) else str(h) for h in self._redis.zrange(PREFIX + name, 0, -1)]

    def names(self) -> Iterator[str]:
        for key in self._redis.scan_iter(match=PREFIX + "*"):
            text = key.decode() if isinstance(key, bytes) else str(key)
            yield text.removeprefix(PREFIX)
