"""Callbacks a simulator sends (webhooks, verdict pushes): held until due, then delivered.

The delayed-delivery outbox with drop / duplicate / bad-signature knobs, the background ticker
that drives it on loopback, and the default background POST, shared by the KIE and WeChat
simulators (VENDORS.md §11.1 "Callbacks").
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, Protocol, TypeVar

import httpx

from vendors.sim.common import roll

Deliver = Callable[[str, Mapping[str, str], bytes], None]
"""Hands one callback to its receiver: `deliver(url, headers, body)`."""


class _Due(Protocol):
    @property
    def due(self) -> float: ...


class _Sent(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def body(self) -> bytes: ...


P = TypeVar("P", bound=_Due)
S = TypeVar("S", bound=_Sent)
T = TypeVar("T")


class Outbox(Generic[P, S]):
    """Callbacks a simulator owes: `pending` until due, then rendered, kept in `sent`, delivered.

    The simulator has no thread of its own, so its `tick()` drives this: `release(now)` under the
    owner's lock (rendering draws from the shared seeded random source, in order), then
    `deliver(sent)` outside it, so a slow receiver never blocks the simulator. `render` turns one
    due item into the copies to send (none when dropped then); `headers` gives a copy's headers.
    """

    def __init__(
        self, *, render: Callable[[P, float], list[S]], headers: Callable[[S], Mapping[str, str]], deliver: Deliver
    ) -> None:
        self._render = render
        self._headers = headers
        self._deliver = deliver
        self.pending: list[P] = []
        self.sent: list[S] = []
        self.dropped = 0

    def add(self, items: Iterable[P]) -> None:
        self.pending.extend(items)

    def drop(self, rng: random.Random, rate: float) -> bool:
        """Roll the drop knob for one callback; a dropped one is only counted."""
        if not roll(rng, rate):
            return False
        self.dropped += 1
        return True

    def release(self, now: float) -> list[S]:
        """Take every item due by `now`, render it and remember what is to be sent."""
        due = [p for p in self.pending if p.due <= now]
        self.pending = [p for p in self.pending if p.due > now]
        sent = [copy for item in due for copy in self._render(item, now)]
        self.sent.extend(sent)
        return sent

    def deliver(self, sent: list[S]) -> int:
        for copy in sent:
            self._deliver(copy.url, self._headers(copy), copy.body)
        return len(sent)

    def clear(self) -> None:
        self.pending.clear()
        self.sent.clear()
        self.dropped = 0


def copies(rng: random.Random, duplicates: int, bad_signature_rate: float, make: Callable[[bool], T]) -> list[T]:
    """`1 + duplicates` copies of one callback, each rolling its own bad signature before it is made."""
    return [make(roll(rng, bad_signature_rate)) for _ in range(1 + duplicates)]


class Ticker:
    """Calls `tick` every `interval_s` from a daemon thread: on loopback nobody else moves the clock."""

    def __init__(self, tick: Callable[[], object], name: str) -> None:
        self._tick = tick
        self._name = name
        self._lock = threading.Lock()
        self._running: tuple[threading.Thread, threading.Event] | None = None

    def start(self, interval_s: float) -> None:
        """Idempotent: a second start while running changes nothing."""
        with self._lock:
            if self._running is not None:
                return
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop, interval_s), name=self._name, daemon=True)
            self._running = (thread, stop)
        thread.start()

    def stop(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            running[1].set()
            running[0].join(timeout=10)

    def _run(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(Exception):  # a failing receiver must not stop the ticker
                self._tick()


def background_poster(thread_name: str) -> Deliver:
    """A `deliver` that POSTs from a daemon thread; a failed delivery is lost (no retries simulated)."""

    def post_in_background(url: str, headers: Mapping[str, str], body: bytes) -> None:
        args = (url, dict(headers), body)
        threading.Thread(target=_post_quietly, args=args, name=thread_name, daemon=True).start()

    return post_in_background


def _post_quietly(url: str, headers: dict[str, str], body: bytes) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, content=body, headers=headers, timeout=10)
