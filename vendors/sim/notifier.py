"""What the payment-channel simulators share (VENDORS.md §8.3, §11): they send notifications.

Orders come from a channel's vendor endpoints or from a `pay(...)` naming its own `notify_url`.
Paying builds the notification now and queues it (plus `duplicates` copies) `delay_s` later;
`tick()` hands every due attempt to `deliver(url, headers, body) -> (status, body)` and re-queues
unacknowledged ones on the compressed `retry_schedule_s` until it runs out; what acknowledges is
the channel's own rule. The simulators have no thread of their own: tests move their clock and
call `tick()`; served on loopback, `start_ticker()` calls it from a daemon thread, and the default
`deliver` POSTs synchronously from that thread. `auto_pay_after_s` pays every order made through
the vendor endpoints that long after it was made (on a later `tick()`).

Keys: each simulator makes its own RSA 2048 pairs when built and never writes them anywhere; none
ever reaches the call log, the admin pages, a delivery record or an exception. One module per
channel: `vendors.sim.wechatpay`, `vendors.sim.alipay`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import ClassVar, Final, Generic, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vendors.plumbing import json_object
from vendors.sim.common import Knobs, SimulatorBase, admin_response, check_non_negative, json_response
from vendors.sim.outbox import Ticker

Deliver = Callable[[str, Mapping[str, str], bytes], tuple[int, bytes]]
"""POST `body` with `headers` to the URL; answer (HTTP status, body); status 0 = no answer."""
BEIJING: Final = timezone(timedelta(hours=8))

K = TypeVar("K", bound="SenderKnobs")
OrderT = TypeVar("OrderT")


@dataclass(frozen=True)
class SenderKnobs(Knobs):
    """What both senders share; `configure(**changes)` or `POST /__sim/config` swaps in a copy.
    `failure_rate` applies to the vendor endpoints (global or by path)."""

    failure_kinds: ClassVar[frozenset[str]] = frozenset({"http_500", "transport"})
    retry_schedule_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)  # waits after each failed attempt
    duplicates: int = 0  # extra identical copies of each notification, each retried on its own
    tamper_signature: bool = False  # notifications signed over other bytes
    delay_s: float = 0.0  # from payment to the first attempt
    auto_pay_after_s: float | None = None  # pay orders made via the vendor endpoints this long after

    def __post_init__(self) -> None:
        super().__post_init__()
        for wait in self.retry_schedule_s:
            check_non_negative("retry_schedule_s", wait)
        if not isinstance(self.duplicates, int) or isinstance(self.duplicates, bool) or self.duplicates < 0:
            raise ValueError(f"duplicates must be a non-negative integer, got {self.duplicates!r}")
        check_non_negative("delay_s", self.delay_s)
        if self.auto_pay_after_s is not None:
            check_non_negative("auto_pay_after_s", self.auto_pay_after_s)


# --- the sender ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver one copy of a notification, and what the receiver answered."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    out_trade_no: str
    copy: int
    attempt: int
    at: float
    status: int  # 0 = no answer
    answer: bytes
    acknowledged: bool


@dataclass(frozen=True)
class Pending:
    """One copy of a notification awaiting its next attempt, with the knobs in force when paid."""

    due: float
    url: str
    body: bytes
    out_trade_no: str
    copy: int
    attempt: int = 1
    tamper: bool = False
    wrong_serial: bool = False
    stale_s: float = 0.0


class PayError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class AlreadyPaid(ValueError):
    """The order was paid (or closed) before: 409 on the admin route."""


class SenderSim(SimulatorBase[K], ABC, Generic[K, OrderT]):
    """The outbox, retries, ticker and admin pay route of a channel (knobs, call log and the rest of
    the admin surface come from SimulatorBase); subclasses add the channel."""

    _name = "payments-sim"
    _amount_name = "amount"
    _pay_path = "/__sim/payments/pay"

    def __init__(self, knobs: K, clock: Callable[[], float], deliver: Deliver | None) -> None:
        super().__init__(knobs, clock)
        self._deliver = deliver or post_and_wait
        self._outbox: list[Pending] = []
        self._deliveries: list[Delivery] = []
        self._given_up = 0
        self._orders: dict[str, OrderT] = {}
        self._ticker = Ticker(self.tick, name=f"{self._name}-ticker")

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def _forget(self) -> None:
        """Orders, pending and past deliveries go; keys and knobs stay."""
        self._orders.clear()
        self._outbox.clear()
        self._deliveries.clear()
        self._given_up = 0

    def force(self, job_id: str, kind: str) -> bool:
        """`/__sim/jobs/{out_trade_no}/complete` pays the order; nothing else applies."""
        if kind != "complete":
            return False
        try:
            self._pay_options(job_id, {})
        except (LookupError, ValueError):
            return False
        return True

    def stats(self) -> dict[str, object]:
        with self._lock:
            acked = sum(1 for d in self._deliveries if d.acknowledged)
            deliveries = {"attempts": len(self._deliveries), "acknowledged": acked,
                          "pending": len(self._outbox), "given_up": self._given_up}  # fmt: skip
            return {**self._order_stats(), "deliveries": deliveries}

    # --- delivery ---------------------------------------------------------------------------------

    def tick(self) -> int:
        """Pay orders due for auto-pay, then attempt every due delivery; return how many were tried."""
        with self._lock:
            now = self._clock()
            self._auto_pay(now)
            due = sorted((p for p in self._outbox if p.due <= now), key=lambda p: p.due)
            self._outbox = [p for p in self._outbox if p.due > now]
            attempts = [(p, self._headers(p, now)) for p in due]
        answers = [self._attempt(p.url, headers, p.body) for p, headers in attempts]
        with self._lock:
            for (pending, headers), (status, answer) in zip(attempts, answers, strict=True):
                self._log_delivery(pending, headers, now, status, answer)
        return len(attempts)

    def start_ticker(self, interval_s: float = 0.2) -> None:
        """Call `tick()` every `interval_s` from a daemon thread (loopback serving); idempotent."""
        self._ticker.start(interval_s)

    def stop_ticker(self) -> None:
        self._ticker.stop()

    def _attempt(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            return self._deliver(url, headers, body)
        except Exception:  # a broken receiver is an unanswered attempt, retried on schedule
            return 0, b""

    def _log_delivery(
        self, pending: Pending, headers: Mapping[str, str], now: float, status: int, answer: bytes
    ) -> None:
        acked = self._acknowledged(status, answer)
        self._deliveries.append(Delivery(pending.url, dict(headers), pending.body, pending.out_trade_no,
                                         pending.copy, pending.attempt, now, status, answer, acked))  # fmt: skip
        schedule = self._knobs.retry_schedule_s
        if acked:
            return
        if pending.attempt > len(schedule):
            self._given_up += 1
            return
        wait = schedule[pending.attempt - 1]
        self._outbox.append(dataclasses.replace(pending, due=now + wait, attempt=pending.attempt + 1))

    def _payable(self, out_trade_no: str, make: Callable[[], OrderT] | None) -> OrderT:
        """The order `pay()` pays: the one known here, else `make()`; None means the caller gave no
        amount and notify_url to make it from (LookupError)."""
        order = self._orders.get(out_trade_no)
        if order is not None:
            return order
        if make is None:
            raise LookupError(f"no order {out_trade_no!r}: give {self._amount_name} and notify_url")
        return make()

    def _queue(self, pending: Pending) -> None:
        """Queue the notification and its duplicates, `delay_s` after `pending.due` (under the lock)."""
        first = dataclasses.replace(pending, due=pending.due + self._knobs.delay_s)
        self._outbox.extend(dataclasses.replace(first, copy=copy) for copy in range(1 + self._knobs.duplicates))

    # --- vendor hooks -----------------------------------------------------------------------------

    @abstractmethod
    def _pay_options(self, out_trade_no: str, options: Mapping[str, object]) -> str:
        """`pay(out_trade_no, **options)` with the options checked (ValueError when wrong)."""

    @abstractmethod
    def _headers(self, pending: Pending, now: float) -> dict[str, str]:
        """The headers of this attempt (WeChat signs each attempt afresh)."""

    @abstractmethod
    def _acknowledged(self, status: int, answer: bytes) -> bool:
        """Whether the receiver's answer stops the resends, as the channel defines it."""

    @abstractmethod
    def _auto_pay(self, now: float) -> None:
        """Pay the orders whose `auto_pay_at` has come (under the lock)."""

    @abstractmethod
    def _order_stats(self) -> dict[str, object]:
        """Order counts for `GET /__sim/stats`."""

    # --- HTTP plumbing ----------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """`POST /__sim/<channel>/pay`, the rest of `/__sim/...`, else the channel's own API."""
        path = request.url.path
        if path == self._pay_path and request.method == "POST":
            return self._admin_pay(request)
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        return self._vendor(request)

    @abstractmethod
    def _vendor(self, request: httpx.Request) -> httpx.Response:
        """A call of the channel's API."""

    def _injected_failure(self, request: httpx.Request) -> httpx.Response | None:
        """The failure knobs drawn for this call (under the lock); `transport` raises."""
        return self._failure(request) if self._draw_failure(request.url.path) else None

    def _admin_pay(self, request: httpx.Request) -> httpx.Response:
        """`POST /__sim/<vendor>/pay {out_trade_no, ...}`: pay now; the notification is queued."""
        body = json_object(request.content.decode("utf-8", "replace") or "{}")
        out_trade_no = body.pop("out_trade_no", None) if body is not None else None
        if body is None or not isinstance(out_trade_no, str):
            return json_response({"error": "body must be a JSON object with out_trade_no"}, status=400)
        try:
            trade_id = self._pay_options(out_trade_no, {k: v for k, v in body.items() if v is not None})
        except LookupError as exc:
            return json_response({"error": str(exc)}, status=404)
        except AlreadyPaid as exc:
            return json_response({"error": str(exc)}, status=409)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"ok": True, "out_trade_no": out_trade_no, "trade_id": trade_id})


def post_and_wait(url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
    """The default `deliver`: POST and wait (5 s, WeChat's own limit); no answer is status 0."""
    try:
        resp = httpx.post(url, content=body, headers=dict(headers), timeout=5)
    except httpx.HTTPError:
        return 0, b""
    return resp.status_code, resp.content


def new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
