"""The bookkeeping of simulators whose vendor runs tasks on a timeline (KIE, RunningHub, ai3d).

A task is accepted, runs from `running_at`, ends at `done_at` with its `fate`, and is gone once it
expires (`expired_at`, or `job_expiry_s` after acceptance). `TaskBook` keeps a simulator's tasks in
the order they were accepted, under the simulator's own lock and clock, and answers what tests ask:
how many of an account's tasks were ever unfinished at once, which tasks were created (orphans of
lost answers included), and `POST /__sim/jobs/{id}/complete|fail|expire`. `TaskQueries` puts
those answers on the simulator itself.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar, Generic, TypeVar

from vendors.sim.common import SimTask, force_timeline, mask_key, max_overlap


@dataclass
class TimedTask:
    """A task's timeline; `account` is the key or SecretId it belongs to, `kind` a vendor's own
    split of its tasks (ai3d: pro | rapid)."""

    task_id: str
    account: str = field(repr=False)
    accepted_at: float
    running_at: float
    done_at: float
    fate: str
    _: KW_ONLY
    kind: str = ""
    expired_at: float = math.inf

    def gone_at(self, expiry_s: float) -> float:
        return min(self.expired_at, self.accepted_at + expiry_s)

    def gone(self, now: float, expiry_s: float) -> bool:
        return now >= self.gone_at(expiry_s)

    def end(self, expiry_s: float) -> float:
        """When the task stopped holding a concurrency slot (finished, or expired first)."""
        return min(self.done_at, self.gone_at(expiry_s))

    words: ClassVar[tuple[str, str, str, str, str]] = ("EXPIRED", "QUEUED", "RUNNING", "SUCCESS", "FAILED")
    """The vendor's words for a task that is gone, queued, running, succeeded, failed."""

    def status(self, now: float, expiry_s: float) -> str:
        gone, queued, running, succeeded, failed = self.words
        if self.gone(now, expiry_s):
            return gone
        if now < self.running_at:
            return queued
        if now < self.done_at:
            return running
        return succeeded if self.fate == "success" else failed

    def finish(self, fate: str, now: float) -> None:
        self.fate = fate
        self.done_at = min(self.done_at, now)
        self.running_at = min(self.running_at, self.done_at)


T = TypeVar("T", bound=TimedTask)


class TaskBook(Generic[T]):
    """A simulator's tasks by id, oldest first; `lock` and `clock` are the simulator's own."""

    def __init__(self, lock: threading.RLock, clock: Callable[[], float], expiry_s: Callable[[], float]) -> None:
        self._lock = lock
        self._clock = clock
        self._expiry_s = expiry_s
        self._tasks: dict[str, T] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._tasks.values()))

    def get(self, task_id: str) -> T | None:
        return self._tasks.get(task_id)

    def add(self, task: T) -> T:
        self._tasks[task.task_id] = task
        return task

    def clear(self) -> None:
        self._tasks.clear()

    def new_id(self, rng: random.Random) -> str:
        """A 19-digit id no task has yet."""
        while (task_id := str(rng.randrange(10**18, 10**19))) in self._tasks:
            pass
        return task_id

    def force(self, task_id: str, kind: str) -> bool:
        """Move a task now: `complete`, `fail` or `expire`. False if the task is unknown."""
        with self._lock:
            return force_timeline(self._tasks.get(task_id), kind, self._clock())

    def unfinished(self, account: str, kind: str | None = None, *, now: float | None = None) -> int:
        """This account's tasks (of `kind`, or all) holding a slot at `now` (default: the clock)."""
        with self._lock:
            at, expiry = self._clock() if now is None else now, self._expiry_s()
            return sum(1 for t in self._mine(account, kind) if t.end(expiry) > at)

    def max_concurrent(self, account: str, kind: str | None = None) -> int:
        """The most of this account's tasks ever unfinished at one instant, from their intervals."""
        with self._lock:
            now, expiry = self._clock(), self._expiry_s()
            ends = ((t.accepted_at, t.end(expiry)) for t in self._mine(account, kind))
            return max_overlap((start, end if end <= now else None) for start, end in ends)

    def created(self) -> list[SimTask]:
        """Every task accepted since the last reset, oldest first; `cancelled` by the vendor's cancel."""
        with self._lock:
            return [SimTask(t.task_id, t.account, t.accepted_at, t.fate == "cancel") for t in self._tasks.values()]

    def stats(self, accounts: Iterable[str], *, busy: str = "unfinished", total: str = "tasks") -> dict[str, object]:
        """Per masked account: the most ever unfinished at once and those unfinished now; the count."""
        with self._lock:
            keys = sorted(accounts)
            return {
                "max_concurrent": {mask_key(k): self.max_concurrent(k) for k in keys},
                busy: {mask_key(k): self.unfinished(k) for k in keys},
                total: len(self._tasks),
            }

    def _mine(self, account: str, kind: str | None) -> list[T]:
        return [t for t in self._tasks.values() if t.account == account and kind in (None, t.kind)]


class TaskQueries(Generic[T]):
    """The conveniences tests call on a simulator with a `TaskBook` (as `_tasks`)."""

    _tasks: TaskBook[T]

    def force(self, job_id: str, kind: str) -> bool:
        """Move a task now: `complete`, `fail` or `expire`. False if the task is unknown."""
        return self._tasks.force(job_id, kind)

    def max_concurrent(self, account: str, kind: str | None = None) -> int:
        return self._tasks.max_concurrent(account, kind)

    def unfinished(self, account: str, kind: str | None = None) -> int:
        return self._tasks.unfinished(account, kind)

    def created_tasks(self) -> list[SimTask]:
        return self._tasks.created()
