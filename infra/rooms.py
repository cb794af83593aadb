"""Waiting rooms and vendor slots in Redis: one room per (vendor, model), cluster-wide (SPEC §6).

A room holds the jobs waiting for the model (a hash of job id -> what the scheduler needs to order
them), the slot leases of the jobs it admitted (a sorted set of holders `job:attempt` scored by
lease expiry in Redis server time), the fair-share tags, a version bumped by every change of the
waiting set, a pause while the vendor answers "too busy", the degradation state, and a `ready`
marker. Every key of a room carries the hash tag `{vendor:model}`, so each script below touches
one cluster slot and runs on Redis Cluster too.

The scheduler's rules live in `domain.scheduling`; the scripts here only keep its invariants
atomic: a job leaves the room once, a room never holds more live leases than the threshold the
caller computed, a lease is renewed only by its holder and never comes back over the limit.
If Redis loses a room (no `ready` marker), nothing is admitted until maintenance rebuilds it from
the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis

PREFIX = "genq:"

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: slots jobs share version busy ready
# ARGV: version, job_id, holder, threshold, ttl_ms, user_id, finish, vclock
_TAKE = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[6]) == 0 then return -3 end
if redis.call('EXISTS', KEYS[5]) == 1 then return -2 end
if tonumber(redis.call('GET', KEYS[4]) or '0') ~= tonumber(ARGV[1]) then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return -4 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[3])
redis.call('HSET', KEYS[3], 'u:' .. ARGV[6], ARGV[7], 'vclock', ARGV[8])
return {1, redis.call('INCR', KEYS[4])}
"""
)

# KEYS: slots jobs share version busy ready; ARGV: (none). Everything choose() needs, at one instant.
_SNAPSHOT = (
    _NOW
    + """
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
return {
  tonumber(redis.call('GET', KEYS[4]) or '0'),
  redis.call('EXISTS', KEYS[6]),
  live,
  redis.call('PTTL', KEYS[5]),
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
}
"""
)

# Admission passes run one at a time per room. KEYS: admitting again; ARGV: token, ttl_ms.
# ENTER marks the room for another pass, then takes the turn if no one holds it (1: yours). LEAVE
# gives the turn back and takes it again at once if someone marked the room meanwhile (1: pass again).
_ENTER = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

_LEAVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

# KEYS: slots; ARGV: ttl_ms, limit, holder... -> per holder 1 renewed, 2 re-taken, 0 lost
_RENEW = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for i = 3, #ARGV do
  local h = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], h) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), h)
    out[#out + 1] = 1
  elseif redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), h)
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

# KEYS: slots; ARGV: holder -> 1 when its lease is live
_HELD = (
    _NOW
    + """
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > now then return 1 end
return 0
"""
)

_IN_FLIGHT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"

# KEYS: slots jobs version; ARGV: job_id, meta, holder ('' for none)
_PUT = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[1], ARGV[3]) end
return redis.call('INCR', KEYS[3])
"""

# KEYS: slots jobs share version ready rebuilding; ARGV: ttl_ms, n_holders, holders..., (job_id, meta)...
# The waiting set is added to, not replaced: a job enqueued while the rebuilder read the database
# would be lost from the room otherwise (a stale entry is dropped when a take finds it moved on).
_REBUILD = (
    _NOW
    + """
redis.call('DEL', KEYS[1], KEYS[3])
local n = tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
for i = 3 + n, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[5], '1')
redis.call('DEL', KEYS[6])
return n
"""
)


class Take(IntEnum):
    """What a take answered: only TAKEN moved the job from waiting to a live lease."""

    TAKEN = 1
    FULL = 0
    STALE = -1  # the waiting set changed since the snapshot: look again
    BUSY = -2  # the room is paused (the vendor said it is full)
    UNREADY = -3  # Redis lost the room: maintenance rebuilds it from the database first
    GONE = -4  # the job is no longer waiting


class Renewal(IntEnum):
    LOST = 0  # lapsed, and the slot went to someone else meanwhile
    RENEWED = 1
    RETAKEN = 2  # lapsed, and taken again: there was room


@dataclass(frozen=True)
class Entry:
    """One waiting job, as the room keeps it for the scheduler."""

    job_id: str
    user_id: str
    cls: str  # domain.scheduling.PriorityClass
    arrival: float  # seconds since the epoch
    weight: float = 1.0  # the variant's size weight
    not_before: float = 0.0
    share: int = 1  # the user's fair-share weight (plan concurrency)

    def packed(self) -> str:
        return json.dumps(
            {
                "u": self.user_id,
                "c": self.cls,
                "a": self.arrival,
                "w": self.weight,
                "n": self.not_before,
                "s": self.share,
            }
        )

    @classmethod
    def unpacked(cls, job_id: str, text: str) -> Entry:
        data = json.loads(text)
        return cls(job_id, data["u"], data["c"], float(data["a"]), float(data["w"]), float(data["n"]), int(data["s"]))


@dataclass(frozen=True)
class Snapshot:
    version: int
    ready: bool
    in_flight: int
    paused_ms: int  # how much longer the room is paused; 0 when it is not
    waiting: tuple[Entry, ...]
    vclock: float
    finish: Mapping[str, float]


def keys(room: str) -> dict[str, str]:
    tag = f"{PREFIX}{{{room}}}:"
    names = ("slots", "jobs", "share", "version", "busy", "ready", "health", "rebuilding", "admitting", "again")
    return {name: tag + name for name in names}


class Rooms:
    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        self._redis = client
        self.ttl_ms = max(int(ttl_s * 1000), 1)
        self._take = client.register_script(_TAKE)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._renew = client.register_script(_RENEW)
        self._held = client.register_script(_HELD)
        self._in_flight = client.register_script(_IN_FLIGHT)
        self._put = client.register_script(_PUT)
        self._rebuild = client.register_script(_REBUILD)
        self._enter = client.register_script(_ENTER)
        self._leave = client.register_script(_LEAVE)

    # --- the waiting set ---------------------------------------------------------------------------

    def enqueue(self, room: str, entry: Entry) -> None:
        k = keys(room)
        self._put(keys=[k["slots"], k["jobs"], k["version"]], args=[entry.job_id, entry.packed(), ""])

    def put_back(self, room: str, entry: Entry, holder: str) -> None:
        """Undo a take: the job waits again and its lease is dropped."""
        k = keys(room)
        self._put(keys=[k["slots"], k["jobs"], k["version"]], args=[entry.job_id, entry.packed(), holder])

    def remove(self, room: str, job_id: str) -> bool:
        k = keys(room)
        pipe = self._redis.pipeline()
        pipe.hdel(k["jobs"], job_id)
        pipe.incr(k["version"])
        removed, _ = pipe.execute()
        return bool(removed)

    def waiting(self, room: str, job_ids: Sequence[str]) -> list[bool]:
        """Which of these jobs the room holds as waiting (maintenance checks stale `queued` jobs)."""
        if not job_ids:
            return []
        return [bool(v) for v in self._redis.hmget(keys(room)["jobs"], list(job_ids))]

    def snapshot(self, room: str) -> Snapshot:
        k = keys(room)
        raw = self._snapshot(keys=[k["slots"], k["jobs"], k["share"], k["version"], k["busy"], k["ready"]])
        version, ready, live, pttl, jobs, share = raw
        entries = tuple(Entry.unpacked(_text(j), _text(m)) for j, m in _pairs(jobs))
        tags = {_text(name): float(value) for name, value in _pairs(share)}
        return Snapshot(
            version=int(version),
            ready=bool(ready),
            in_flight=int(live),
            paused_ms=max(int(pttl), 0),
            waiting=entries,
            vclock=tags.pop("vclock", 0.0),
            finish={name.removeprefix("u:"): tag for name, tag in tags.items()},
        )

    def take(
        self,
        room: str,
        *,
        version: int,
        job_id: str,
        holder: str,
        threshold: int,
        user_id: str,
        finish: float,
        vclock: float,
    ) -> tuple[Take, int]:
        """Move a waiting job to a live lease held by `holder`, if nothing changed and there is room;
        with the room's version after a take (`version` otherwise)."""
        k = keys(room)
        answer = self._take(
            keys=[k["slots"], k["jobs"], k["share"], k["version"], k["busy"], k["ready"]],
            args=[version, job_id, holder, threshold, self.ttl_ms, user_id, repr(finish), repr(vclock)],
        )
        if isinstance(answer, list):
            return Take(int(answer[0])), int(answer[1])
        return Take(int(answer)), version

    # --- one admission pass at a time per room -----------------------------------------------------

    def enter_admission(self, room: str, token: str, *, ttl_s: float) -> bool:
        """Ask for a pass over the room: True when the caller's turn starts now; False when another
        process is passing (it will pass once more for this call)."""
        k = keys(room)
        return bool(self._enter(keys=[k["admitting"], k["again"]], args=[token, max(int(ttl_s * 1000), 1)]))

    def leave_admission(self, room: str, token: str, *, ttl_s: float) -> bool:
        """End the caller's pass: True when someone asked meanwhile, and the turn is the caller's again."""
        k = keys(room)
        return bool(self._leave(keys=[k["admitting"], k["again"]], args=[token, max(int(ttl_s * 1000), 1)]))

    # --- leases ------------------------------------------------------------------------------------

    def renew(self, room: str, holders: Sequence[str], *, limit: int) -> list[Renewal]:
        """Keep these holders' leases alive; a lapsed lease comes back only while under `limit`."""
        if not holders:
            return []
        answer = self._renew(keys=[keys(room)["slots"]], args=[self.ttl_ms, max(limit, 0), *holders])
        return [Renewal(int(a)) for a in answer]

    def held(self, room: str, holder: str) -> bool:
        return bool(self._held(keys=[keys(room)["slots"]], args=[holder]))

    def release(self, room: str, holder: str) -> bool:
        """Give the slot back; only the holder's own lease is removed (False: it was not held)."""
        return bool(self._redis.zrem(keys(room)["slots"], holder))

    def in_flight(self, room: str) -> int:
        return int(self._in_flight(keys=[keys(room)["slots"]]))

    def holders(self, room: str) -> list[str]:
        return [_text(h) for h in self._redis.zrange(keys(room)["slots"], 0, -1)]

    # --- pause, readiness, health ------------------------------------------------------------------

    def pause(self, room: str, *, ms: int) -> None:
        """The vendor answered "too busy": admit nobody here for `ms` (a longer pause wins)."""
        key = keys(room)["busy"]
        if self._redis.pttl(key) < ms:
            self._redis.set(key, "1", px=max(ms, 1))

    def resume(self, room: str) -> None:
        """End a pause now (the caller admits next)."""
        self._redis.delete(keys(room)["busy"])

    def ready(self, room: str) -> bool:
        return bool(self._redis.exists(keys(room)["ready"]))

    def lock_rebuild(self, room: str, *, ttl_s: float = 10.0) -> bool:
        """One rebuilder at a time: True for the caller that may rebuild now."""
        return bool(self._redis.set(keys(room)["rebuilding"], "1", nx=True, px=int(ttl_s * 1000)))

    def rebuild(self, room: str, holders: Iterable[str], entries: Iterable[Entry]) -> None:
        """Replace the room's leases with what the database says, add its waiting jobs, then mark it ready."""
        k = keys(room)
        held = list(holders)
        flat: list[str] = []
        for entry in entries:
            flat += [entry.job_id, entry.packed()]
        self._rebuild(
            keys=[k["slots"], k["jobs"], k["share"], k["version"], k["ready"], k["rebuilding"]],
            args=[self.ttl_ms, len(held), *held, *flat],
        )

    def health(self, room: str) -> dict[str, Any] | None:
        raw = self._redis.get(keys(room)["health"])
        return None if raw is None else dict(json.loads(raw))

    def update_health(self, room: str, change: Any) -> dict[str, Any]:
        """Read-modify-write the room's health under WATCH: `change(old or None) -> new`."""
        key = keys(room)["health"]
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    new = dict(change(None if raw is None else json.loads(raw)))
                    pipe.multi()
                    pipe.set(key, json.dumps(new))
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue


def _pairs(flat: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    return zip(flat[::2], flat[1::2], strict=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
