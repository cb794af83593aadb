"""WeChat Pay v3 and Alipay simulators (VENDORS.md §8.3, §11): the senders of payment notifications.

Keys: each simulator makes its own RSA 2048 pairs when built and never writes them anywhere. It keeps
the vendor's private half and publishes the public half genq is configured with (WeChat:
`public_key` + its `serial` `PUB_KEY_ID_SIM...`; Alipay: `alipay_public_key`). The merchant side is
the other way round: in reality the merchant makes its key and uploads the public half, so the
simulator also makes a merchant/app pair and hands out the private half (`merchant_private_key` +
`merchant_serial`; `app_private_key`) like a sandbox console would; further merchant/app public
keys (configured real ones) can be trusted with `merchant_public_keys=` / `app_public_keys=`. The
WeChat APIv3 key is the one given, else 32 random characters (`api_v3_key`). None of them ever
reaches the call log, the admin pages, a delivery record or an exception.

Orders come from the vendor endpoints (WeChat Native prepay; Alipay `precreate`, made server-side
like prepay, or `page.pay` when the payer's browser opens the cashier URL) or from a `pay(...)`
naming its own `notify_url`. Paying builds the notification now and queues it (plus `duplicates`
copies) `delay_s` later; `tick()` hands every due attempt to `deliver(url, headers, body) ->
(status, body)` and re-queues unacknowledged ones on the compressed `retry_schedule_s` until it runs
out. WeChat wants HTTP 200/204; Alipay wants HTTP 200 with a body of exactly `success`. The
simulators have no thread of their own: tests move their clock and call `tick()`; served on
loopback, `start_ticker()` calls it from a daemon thread, and the default `deliver` POSTs
synchronously from that thread. `auto_pay_after_s` pays every order made through
prepay/precreate/page.pay that long after it was made (on a later `tick()`). Alipay's
`alipay.trade.query` answers ACQ.TRADE_NOT_EXIST for an order until it is paid or closed (as real
Alipay does for a QR nobody has scanned yet); there is no WAIT_BUYER_PAY state here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import random
import re
import secrets
import string
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Final, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vendors.sim.common import (
    Call,
    CallLog,
    admin_response,
    apply_knobs,
    check_non_negative,
    check_rate,
    json_response,
    mask_key,
    rate_for,
    roll,
)

Deliver = Callable[[str, Mapping[str, str], bytes], tuple[int, bytes]]
"""POST `body` with `headers` to the URL; answer (HTTP status, body); status 0 = no answer."""
BEIJING: Final = timezone(timedelta(hours=8))
FAILURE_KINDS: Final = frozenset({"http_500", "transport"})
WECHAT_NATIVE: Final = "/v3/pay/transactions/native"
WECHAT_QUERY: Final = re.compile(r"/v3/pay/transactions/out-trade-no/([^/]+)")
WECHAT_PAY: Final = "/__sim/wechatpay/pay"
ALIPAY_GATEWAY: Final = "/gateway.do"
ALIPAY_PAY: Final = "/__sim/alipay/pay"
ALIPAY_NOTIFIED: Final = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"})
_ALNUM: Final = string.ascii_letters + string.digits
_LOWER_ALNUM: Final = string.ascii_lowercase + string.digits

K = TypeVar("K", bound="SenderKnobs")


# --- knobs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SenderKnobs:
    """What both senders share; `configure(**changes)` or `POST /__sim/config` swaps in a copy."""

    retry_schedule_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)  # waits after each failed attempt
    duplicates: int = 0  # extra identical copies of each notification, each retried on its own
    tamper_signature: bool = False  # notifications signed over other bytes
    delay_s: float = 0.0  # from payment to the first attempt
    auto_pay_after_s: float | None = None  # pay orders made via prepay/precreate/page.pay this long after
    failure_rate: float | Mapping[str, float] = 0.0  # vendor endpoints: global or {path or "*": rate}
    failure_kind: str = "http_500"  # http_500 | transport
    seed: int | None = None

    def __post_init__(self) -> None:
        for wait in self.retry_schedule_s:
            check_non_negative("retry_schedule_s", wait)
        if not isinstance(self.duplicates, int) or isinstance(self.duplicates, bool) or self.duplicates < 0:
            raise ValueError(f"duplicates must be a non-negative integer, got {self.duplicates!r}")
        check_non_negative("delay_s", self.delay_s)
        if self.auto_pay_after_s is not None:
            check_non_negative("auto_pay_after_s", self.auto_pay_after_s)
        check_rate("failure_rate", self.failure_rate)
        if self.failure_kind not in FAILURE_KINDS:
            raise ValueError(f"failure_kind must be one of {sorted(FAILURE_KINDS)}")


@dataclass(frozen=True)
class WechatPayKnobs(SenderKnobs):
    wrong_serial: bool = False  # notifications name a serial genq does not know
    stale_timestamp: float = 0.0  # seconds `Wechatpay-Timestamp` lags the clock (360 = 6 min stale)
    amount_override: int | None = None  # fen actually paid, whatever the order says

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("stale_timestamp", self.stale_timestamp)
        if self.amount_override is not None and (
            not isinstance(self.amount_override, int) or self.amount_override <= 0
        ):
            raise ValueError("amount_override must be a positive number of fen")


@dataclass(frozen=True)
class AlipayKnobs(SenderKnobs):
    trade_status: str = "TRADE_SUCCESS"  # or TRADE_FINISHED / TRADE_CLOSED
    amount_override: str | None = None  # yuan actually paid, e.g. "0.01"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trade_status not in ALIPAY_NOTIFIED:
            raise ValueError(f"trade_status must be one of {sorted(ALIPAY_NOTIFIED)}")
        if self.amount_override is not None:
            _yuan(self.amount_override)


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
class _Pending:
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


class _PayError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class _AlreadyPaid(ValueError):
    """The order was paid (or closed) before: 409 on the admin route."""


class _SenderSim(ABC, Generic[K]):
    """Knobs, call log, admin surface, outbox, retries and ticker; subclasses add the vendor."""

    _name = "payments-sim"

    def __init__(self, knobs: K, clock: Callable[[], float], deliver: Deliver | None) -> None:
        self._clock = clock
        self._deliver = deliver or post_and_wait
        self._lock = threading.RLock()
        self._knobs = knobs
        self._rng = random.Random(knobs.seed)
        self._log = CallLog()
        self._outbox: list[_Pending] = []
        self._deliveries: list[Delivery] = []
        self._given_up = 0
        self._ticker: tuple[threading.Thread, threading.Event] | None = None

    @property
    def knobs(self) -> K:
        return self._knobs

    @property
    def calls(self) -> list[Call]:
        return self._log.snapshot()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def calls_json(self) -> list[dict[str, object]]:
        return self._log.to_json()

    def knobs_json(self) -> dict[str, object]:
        return dataclasses.asdict(self._knobs)

    def configure(self, **changes: object) -> K:
        with self._lock:
            self._knobs = apply_knobs(self._knobs, changes)
            if "seed" in changes:
                self._rng = random.Random(self._knobs.seed)
            return self._knobs

    def reset(self) -> None:
        """Forget orders, calls, pending and past deliveries; keys and knobs stay."""
        with self._lock:
            self._forget_orders()
            self._outbox.clear()
            self._deliveries.clear()
            self._given_up = 0
            self._log.clear()

    def force(self, job_id: str, kind: str) -> bool:
        """`/__sim/jobs/{out_trade_no}/complete` pays the order; nothing else applies."""
        if kind != "complete":
            return False
        try:
            self._pay_options(job_id, {})
        except (LookupError, ValueError):
            return False
        return True

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        return json_response({"error": "no files here"}, status=404)

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
                self._record(pending, headers, now, status, answer)
        return len(attempts)

    def start_ticker(self, interval_s: float = 0.2) -> None:
        """Call `tick()` every `interval_s` from a daemon thread (loopback serving); idempotent."""
        with self._lock:
            if self._ticker is not None:
                return
            stop = threading.Event()
            thread = threading.Thread(target=self._tick_until, args=(stop, interval_s), name=f"{self._name}-ticker")
            thread.daemon = True
            self._ticker = (thread, stop)
        thread.start()

    def stop_ticker(self) -> None:
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker[1].set()
            ticker[0].join(timeout=10)

    def _tick_until(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(Exception):  # a failing receiver must not stop the ticker
                self.tick()

    def _attempt(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            return self._deliver(url, headers, body)
        except Exception:  # a broken receiver is an unanswered attempt, retried on schedule
            return 0, b""

    def _record(self, pending: _Pending, headers: Mapping[str, str], now: float, status: int, answer: bytes) -> None:
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

    def _queue(self, pending: _Pending) -> None:
        """Queue the notification and its duplicates, `delay_s` after `pending.due` (under the lock)."""
        first = dataclasses.replace(pending, due=pending.due + self._knobs.delay_s)
        self._outbox.extend(dataclasses.replace(first, copy=copy) for copy in range(1 + self._knobs.duplicates))

    # --- vendor hooks -----------------------------------------------------------------------------

    @abstractmethod
    def _pay_options(self, out_trade_no: str, options: Mapping[str, object]) -> str:
        """`pay(out_trade_no, **options)` with the options checked (ValueError when wrong)."""

    @abstractmethod
    def _headers(self, pending: _Pending, now: float) -> dict[str, str]:
        """The headers of this attempt (WeChat signs each attempt afresh)."""

    @abstractmethod
    def _acknowledged(self, status: int, answer: bytes) -> bool:
        """Whether the receiver's answer stops the resends, as the channel defines it."""

    @abstractmethod
    def _auto_pay(self, now: float) -> None:
        """Pay the orders whose `auto_pay_at` has come (under the lock)."""

    @abstractmethod
    def _forget_orders(self) -> None:
        """Drop every order (reset)."""

    @abstractmethod
    def _order_stats(self) -> dict[str, object]:
        """Order counts for `GET /__sim/stats`."""

    # --- HTTP plumbing ----------------------------------------------------------------------------

    def _injected_failure(self, request: httpx.Request) -> httpx.Response | None:
        """The failure knobs drawn for this call (under the lock); `transport` raises."""
        if not roll(self._rng, rate_for(self._knobs.failure_rate, request.url.path)):
            return None
        if self._knobs.failure_kind == "transport":
            raise httpx.ConnectError("simulated connection reset", request=request)
        return httpx.Response(500, text="Internal Server Error")

    def _admin_pay(self, request: httpx.Request) -> httpx.Response:
        """`POST /__sim/<vendor>/pay {out_trade_no, ...}`: pay now; the notification is queued."""
        body = _json_dict(request.content.decode("utf-8", "replace") or "{}")
        out_trade_no = body.pop("out_trade_no", None) if body is not None else None
        if body is None or not isinstance(out_trade_no, str):
            return json_response({"error": "body must be a JSON object with out_trade_no"}, status=400)
        try:
            trade_id = self._pay_options(out_trade_no, {k: v for k, v in body.items() if v is not None})
        except LookupError as exc:
            return json_response({"error": str(exc)}, status=404)
        except _AlreadyPaid as exc:
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


# --- WeChat Pay ------------------------------------------------------------------------------------


@dataclass
class _WxOrder:
    out_trade_no: str
    total: int
    description: str
    notify_url: str
    created_at: float
    auto_pay_at: float | None
    code_url: str
    paid: dict[str, object] | None = None  # the transaction, once paid


class WechatPaySim(_SenderSim[WechatPayKnobs]):
    """WeChat Pay v3: Native prepay, the signed order query, and signed + encrypted notifications."""

    _name = "wechatpay-sim"

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        api_v3_key: str | None = None,
        merchant_public_keys: Mapping[str, RSAPublicKey] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        deliver: Deliver | None = None,
    ) -> None:
        super().__init__(WechatPayKnobs(seed=seed), clock, deliver)
        self.mchid, self.appid = mchid, appid
        self._api_v3_key = api_v3_key if api_v3_key is not None else secrets.token_hex(16)
        if len(self._api_v3_key.encode()) != 32:
            raise ValueError("the APIv3 key must be 32 ASCII characters")
        self._platform_key = _new_key()
        self.public_key: RSAPublicKey = self._platform_key.public_key()
        self.serial = "PUB_KEY_ID_SIM" + "".join(secrets.choice(string.digits) for _ in range(24))
        self.merchant_private_key: RSAPrivateKey = _new_key()
        self.merchant_serial = secrets.token_hex(20).upper()
        self._merchant_keys = {self.merchant_serial: self.merchant_private_key.public_key(),
                               **(merchant_public_keys or {})}  # fmt: skip
        self._orders: dict[str, _WxOrder] = {}

    @property
    def api_v3_key(self) -> str:
        """The symmetric key genq decrypts notifications with (configure genq with it)."""
        return self._api_v3_key

    @property
    def public_keys(self) -> dict[str, RSAPublicKey]:
        """serial -> key, as `verify_notification` takes it."""
        return {self.serial: self.public_key}

    def pay(self, out_trade_no: str, *, amount: int | None = None, notify_url: str | None = None) -> str:
        """Pay an order now (`amount` fen, default the order's; an order unknown here needs
        `amount` and `notify_url`); return the transaction id. Paying twice is a ValueError."""
        with self._lock:
            now = self._clock()
            order = self._orders.get(out_trade_no)
            if order is None:
                if amount is None or notify_url is None:
                    raise LookupError(f"no order {out_trade_no!r}: give amount and notify_url")
                order = self._new_order(out_trade_no, amount, "", notify_url, now, auto=False)
            return self._pay_order(order, amount, now)

    def _pay_options(self, out_trade_no: str, options: Mapping[str, object]) -> str:
        amount, notify_url = options.get("amount"), options.get("notify_url")
        unknown = sorted(set(options) - {"amount", "notify_url"})
        if unknown or not (amount is None or (isinstance(amount, int) and not isinstance(amount, bool) and amount > 0)):
            raise ValueError(f"options are amount (positive fen) and notify_url; got {sorted(options)}")
        if not (notify_url is None or isinstance(notify_url, str)):
            raise ValueError("notify_url must be a string")
        return self.pay(out_trade_no, amount=amount, notify_url=notify_url)

    def _pay_order(self, order: _WxOrder, amount: int | None, now: float) -> str:
        if order.paid is not None:
            raise _AlreadyPaid(f"order {order.out_trade_no!r} is already paid")
        knobs = self._knobs
        total = knobs.amount_override or amount or order.total
        transaction_id = "4200" + "".join(self._rng.choice(string.digits) for _ in range(24))
        order.paid = {
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": order.out_trade_no,
            "transaction_id": transaction_id, "trade_type": "NATIVE", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": _rfc3339(now), "payer": {"openid": "oSim" + self._token(24)},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
        }  # fmt: skip
        body = _compact(self._notification(order.paid, now)).encode()
        self._queue(_Pending(now, order.notify_url, body, order.out_trade_no, 0, tamper=knobs.tamper_signature,
                             wrong_serial=knobs.wrong_serial, stale_s=knobs.stale_timestamp))  # fmt: skip
        return transaction_id

    def _notification(self, transaction: Mapping[str, object], now: float) -> dict[str, object]:
        """The `TRANSACTION.SUCCESS` envelope with the transaction AES-256-GCM encrypted (§8.1)."""
        nonce = self._token(12)
        sealed = AESGCM(self._api_v3_key.encode()).encrypt(
            nonce.encode(), _compact(transaction).encode(), b"transaction"
        )
        ciphertext = base64.b64encode(sealed).decode()
        resource = {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM", "ciphertext": ciphertext,
                    "associated_data": "transaction", "nonce": nonce}  # fmt: skip
        return {"id": "EV-" + self._token(20), "create_time": _rfc3339(now), "resource_type": "encrypt-resource",
                "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功", "resource": resource}  # fmt: skip

    def _headers(self, pending: _Pending, now: float) -> dict[str, str]:
        """Signed afresh for every attempt: new timestamp and nonce, same body."""
        signed = self._signature_headers(pending.body, now - pending.stale_s, pending.tamper)
        if pending.wrong_serial:
            signed["Wechatpay-Serial"] = "PUB_KEY_ID_SIM" + "0" * 24
        return {"Content-Type": "application/json", **signed}

    def _signature_headers(self, body: bytes, at: float, tamper: bool = False) -> dict[str, str]:
        timestamp, nonce = str(int(at)), self._token(32)
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n" + (b"tampered" if tamper else b"")
        signature = self._platform_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {"Wechatpay-Serial": self.serial, "Wechatpay-Signature": base64.b64encode(signature).decode(),
                "Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048", "Request-ID": self._token(16)}  # fmt: skip

    def _acknowledged(self, status: int, answer: bytes) -> bool:
        return status in (200, 204)

    def _auto_pay(self, now: float) -> None:
        for order in self._orders.values():
            if order.paid is None and order.auto_pay_at is not None and order.auto_pay_at <= now:
                self._pay_order(order, None, now)

    def _forget_orders(self) -> None:
        self._orders.clear()

    def _order_stats(self) -> dict[str, object]:
        return {"orders": len(self._orders), "paid": sum(1 for o in self._orders.values() if o.paid)}

    def _new_order(
        self, out_trade_no: str, total: int, description: str, notify_url: str, now: float, *, auto: bool
    ) -> _WxOrder:
        after = self._knobs.auto_pay_after_s if auto else None
        code_url = "weixin://wxpay/bizpayurl?pr=" + self._token(7)
        order = _WxOrder(out_trade_no, total, description, notify_url, now,
                         None if after is None else now + after, code_url)  # fmt: skip
        self._orders[out_trade_no] = order
        return order

    def _token(self, n: int) -> str:
        return "".join(self._rng.choice(_ALNUM) for _ in range(n))

    # --- HTTP -------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """`/__sim/...` admin and pay, or a vendor path (merchant signature checked; signed answer)."""
        path = request.url.path
        if path == WECHAT_PAY and request.method == "POST":
            return self._admin_pay(request)
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        query = WECHAT_QUERY.fullmatch(path) if request.method == "GET" else None
        if query is None and (request.method, path) != ("POST", WECHAT_NATIVE):
            return self._answer(404, {"code": "NOT_FOUND", "message": "no such API"})
        body = _json_dict(request.content.decode("utf-8", "replace")) if query is None else {}
        out_trade_no = query.group(1) if query else (body or {}).get("out_trade_no")
        with self._lock:
            self._record_call(request, out_trade_no if isinstance(out_trade_no, str) else None, body)
            injected = self._injected_failure(request)
            if injected is not None:
                return injected
            try:
                self._check_authorization(request)
                payload = self._query(request, query.group(1)) if query else self._prepay(body)
            except _PayError as exc:
                return self._answer(exc.status, {"code": exc.code, "message": exc.message})
            return self._answer(200, payload)

    def _check_authorization(self, request: httpx.Request) -> None:
        """`WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,timestamp=..,serial_no=..`
        over `METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`, within 5 minutes."""
        scheme, _, rest = request.headers.get("authorization", "").partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        key = self._merchant_keys.get(fields.get("serial_no", ""))
        timestamp = fields.get("timestamp", "")
        if scheme != "WECHATPAY2-SHA256-RSA2048" or fields.get("mchid") != self.mchid or key is None:
            raise _PayError(401, "SIGN_ERROR", "签名错误: unknown merchant or certificate serial")
        if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > 300:
            raise _PayError(401, "SIGN_ERROR", "签名错误: timestamp out of range")
        target = request.url.raw_path.decode("ascii")
        message = f"{request.method}\n{target}\n{timestamp}\n{fields.get('nonce_str', '')}\n".encode()
        if not _verify(key, fields.get("signature", ""), message + request.content + b"\n"):
            raise _PayError(401, "SIGN_ERROR", "签名错误")

    def _prepay(self, body: Mapping[str, object] | None) -> dict[str, object]:
        if body is None:
            raise _PayError(400, "PARAM_ERROR", "body must be a JSON object")
        amount = body.get("amount")
        total = amount.get("total") if isinstance(amount, Mapping) else None
        out_trade_no, notify_url = body.get("out_trade_no"), body.get("notify_url")
        description = body.get("description")
        if body.get("mchid") != self.mchid or body.get("appid") != self.appid:
            raise _PayError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise _PayError(400, "PARAM_ERROR", "amount.total must be a positive integer")
        if not isinstance(out_trade_no, str) or not re.fullmatch(r"[\w|*@-]{6,32}", out_trade_no):
            raise _PayError(400, "PARAM_ERROR", "out_trade_no must be 6-32 of [A-Za-z0-9_-|*@]")
        if not isinstance(notify_url, str) or not notify_url.startswith(("http://", "https://")):
            raise _PayError(400, "PARAM_ERROR", "notify_url must be a URL")
        if not isinstance(description, str) or not 0 < len(description) <= 127:
            raise _PayError(400, "PARAM_ERROR", "description must be 1-127 characters")
        order = self._orders.get(out_trade_no)
        if order is not None and (order.total != total or order.paid is not None):
            raise _PayError(400, "OUT_TRADE_NO_USED", "商户订单号重复")
        if order is None:
            order = self._new_order(out_trade_no, total, description, notify_url, self._clock(), auto=True)
        return {"code_url": order.code_url}

    def _query(self, request: httpx.Request, out_trade_no: str) -> dict[str, object]:
        if request.url.params.get("mchid") != self.mchid:
            raise _PayError(400, "PARAM_ERROR", "mchid must be the merchant's")
        order = self._orders.get(out_trade_no)
        if order is None:
            raise _PayError(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.paid is not None:
            return order.paid
        return {"appid": self.appid, "mchid": self.mchid, "out_trade_no": out_trade_no,
                "trade_state": "NOTPAY", "trade_state_desc": "订单未支付",
                "amount": {"total": order.total, "payer_total": 0, "currency": "CNY"}}  # fmt: skip

    def _answer(self, status: int, payload: Mapping[str, object]) -> httpx.Response:
        """Every answer is signed like a notification, with the current clock."""
        body = _compact(payload).encode()
        headers = {"Content-Type": "application/json", **self._signature_headers(body, self._clock())}
        return httpx.Response(status, headers=headers, content=body)

    def _record_call(self, request: httpx.Request, out_trade_no: str | None, body: Mapping[str, object] | None) -> None:
        """The merchant serial (masked) stands in for the API key; the Authorization is not kept."""
        serial = dict(re.findall(r'(\w+)="([^"]*)"', request.headers.get("authorization", ""))).get("serial_no", "")
        at = self._clock()
        self._log.record(Call(request.method, request.url.path, at, mask_key(serial), out_trade_no, dict(body or {})))


# --- Alipay ----------------------------------------------------------------------------------------


@dataclass
class _AliOrder:
    out_trade_no: str
    total_amount: Decimal
    subject: str
    notify_url: str
    created_at: float
    auto_pay_at: float | None
    trade: dict[str, str] | None = None  # the notify form (minus sign), once paid or closed
    qr_code: str | None = None  # once precreated


class AlipaySim(_SenderSim[AlipayKnobs]):
    """Alipay: the signed gateway (`alipay.trade.query`, `alipay.trade.precreate`,
    `alipay.trade.page.pay`) and RSA2 notifies."""

    _name = "alipay-sim"

    def __init__(
        self,
        *,
        app_id: str,
        app_public_keys: Iterable[RSAPublicKey] = (),
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        deliver: Deliver | None = None,
    ) -> None:
        super().__init__(AlipayKnobs(seed=seed), clock, deliver)
        self.app_id = app_id
        self._alipay_key = _new_key()
        self.alipay_public_key: RSAPublicKey = self._alipay_key.public_key()
        self.app_private_key: RSAPrivateKey = _new_key()
        self._app_keys = [self.app_private_key.public_key(), *app_public_keys]
        self._seller_id = "2088" + "".join(self._rng.choice(string.digits) for _ in range(12))
        self._orders: dict[str, _AliOrder] = {}

    def pay(
        self,
        out_trade_no: str,
        *,
        trade_status: str | None = None,
        total_amount: str | Decimal | None = None,
        notify_url: str | None = None,
    ) -> str:
        """Pay (or with `trade_status="TRADE_CLOSED"`, close) an order now; an order unknown here
        needs `total_amount` (yuan) and `notify_url`. Return the trade_no; twice is a ValueError."""
        if trade_status is not None and trade_status not in ALIPAY_NOTIFIED:
            raise ValueError(f"trade_status must be one of {sorted(ALIPAY_NOTIFIED)}")
        amount = None if total_amount is None else _yuan(total_amount)
        with self._lock:
            now = self._clock()
            order = self._orders.get(out_trade_no)
            if order is None:
                if amount is None or notify_url is None:
                    raise LookupError(f"no order {out_trade_no!r}: give total_amount and notify_url")
                order = self._new_order(out_trade_no, amount, "genq order", notify_url, now, auto=False)
            return self._pay_order(order, trade_status, amount, now)

    def _pay_options(self, out_trade_no: str, options: Mapping[str, object]) -> str:
        names = ("trade_status", "total_amount", "notify_url")
        if set(options) - set(names) or not all(isinstance(options.get(n, ""), str) for n in names):
            raise ValueError(f"options are {', '.join(names)} (strings); got {sorted(options)}")
        status, total, url = (options.get(n) for n in names)
        return self.pay(out_trade_no, trade_status=_opt(status), total_amount=_opt(total), notify_url=_opt(url))

    def _pay_order(self, order: _AliOrder, status: str | None, amount: Decimal | None, now: float) -> str:
        if order.trade is not None:
            raise _AlreadyPaid(f"order {order.out_trade_no!r} is already {order.trade['trade_status']}")
        knobs = self._knobs
        status = status or knobs.trade_status
        override = None if knobs.amount_override is None else _yuan(knobs.amount_override)
        total = f"{override or amount or order.total_amount:.2f}"
        paid = status != "TRADE_CLOSED"
        stamp = _beijing(now)
        order.trade = {
            "notify_time": stamp, "notify_type": "trade_status_sync", "notify_id": self._digits(34),
            "app_id": self.app_id, "charset": "utf-8", "version": "1.0", "trade_no": _trade_no(now, self._rng),
            "out_trade_no": order.out_trade_no, "buyer_id": "2088" + self._digits(12),
            "buyer_logon_id": "sim***@example.com", "seller_id": self._seller_id, "trade_status": status,
            "total_amount": total, "receipt_amount": total if paid else "0.00",
            "buyer_pay_amount": total if paid else "0.00", "invoice_amount": total if paid else "0.00",
            "point_amount": "0.00", "subject": order.subject, "gmt_create": _beijing(order.created_at),
            ("gmt_payment" if paid else "gmt_close"): stamp,
        }  # fmt: skip
        form = {**order.trade, "sign_type": "RSA2", "sign": self._notify_sign(order.trade, knobs.tamper_signature)}
        self._queue(_Pending(now, order.notify_url, urlencode(form).encode(), order.out_trade_no, 0))
        return order.trade["trade_no"]

    def _notify_sign(self, form: Mapping[str, str], tamper: bool) -> str:
        content = _sign_content(form, drop={"sign", "sign_type"}) + (b"tampered" if tamper else b"")
        return base64.b64encode(self._alipay_key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()

    def _headers(self, pending: _Pending, now: float) -> dict[str, str]:
        return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

    def _acknowledged(self, status: int, answer: bytes) -> bool:
        return status == 200 and answer == b"success"

    def _auto_pay(self, now: float) -> None:
        for order in self._orders.values():
            if order.trade is None and order.auto_pay_at is not None and order.auto_pay_at <= now:
                self._pay_order(order, None, None, now)

    def _forget_orders(self) -> None:
        self._orders.clear()

    def _order_stats(self) -> dict[str, object]:
        trades = [o.trade for o in self._orders.values() if o.trade]
        return {"orders": len(self._orders), "paid": sum(1 for t in trades if t["trade_status"] != "TRADE_CLOSED"),
                "closed": sum(1 for t in trades if t["trade_status"] == "TRADE_CLOSED")}  # fmt: skip

    def _new_order(
        self, out_trade_no: str, total: Decimal, subject: str, notify_url: str, now: float, *, auto: bool
    ) -> _AliOrder:
        after = self._knobs.auto_pay_after_s if auto else None
        order = _AliOrder(out_trade_no, total, subject, notify_url, now, None if after is None else now + after)
        self._orders[out_trade_no] = order
        return order

    def _digits(self, n: int) -> str:
        return "".join(self._rng.choice(string.digits) for _ in range(n))

    # --- HTTP -------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """`/__sim/...` admin and pay, or `/gateway.do` (request signature checked; signed answer)."""
        path = request.url.path
        if path == ALIPAY_PAY and request.method == "POST":
            return self._admin_pay(request)
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        if path != ALIPAY_GATEWAY or request.method not in ("GET", "POST"):
            return httpx.Response(404, text="Not Found")
        params = _gateway_params(request)
        with self._lock:
            self._record_call(request, params)
            return self._injected_failure(request) or self._gateway(params)

    def _gateway(self, params: Mapping[str, str]) -> httpx.Response:
        method = params.get("method", "")
        if method == "alipay.trade.page.pay":
            return self._page_pay(params)
        if method == "alipay.trade.precreate":
            return self._answer("alipay_trade_precreate_response", self._precreate(params))
        if method != "alipay.trade.query":
            return self._answer("error_response", _failure("40002", "isv.invalid-method", "不存在的方法名"))
        node = self._gateway_error(params) or self._query(params)
        return self._answer("alipay_trade_query_response", node)

    def _gateway_error(self, params: Mapping[str, str]) -> dict[str, str] | None:
        """Common checks of a gateway request: app, sign type, RSA2 signature of the app key."""
        if params.get("app_id") != self.app_id:
            return _failure("40002", "isv.invalid-app-id", "无效的AppID参数")
        if params.get("sign_type") != "RSA2":
            return _failure("40002", "isv.invalid-signature-type", "无效的签名类型")
        content = _sign_content(params, drop={"sign"})
        if not any(_verify(key, params.get("sign", ""), content) for key in self._app_keys):
            return _failure("40002", "isv.invalid-signature", "验签出错")
        return None

    def _query(self, params: Mapping[str, str]) -> dict[str, str]:
        biz = _json_dict(params.get("biz_content", ""))
        out_trade_no = biz.get("out_trade_no") if biz else None
        if not isinstance(out_trade_no, str):
            return _failure("40002", "isv.invalid-parameter", "参数无效: out_trade_no")
        order = self._orders.get(out_trade_no)
        if order is None or order.trade is None:
            return {**_failure("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在"), "out_trade_no": out_trade_no}
        trade = order.trade
        names = ("trade_no", "out_trade_no", "buyer_logon_id", "trade_status", "total_amount", "receipt_amount",
                 "buyer_pay_amount", "point_amount", "invoice_amount")  # fmt: skip
        node = {"code": "10000", "msg": "Success", **{name: trade[name] for name in names}}
        return {**node, "send_pay_date": trade.get("gmt_payment", ""), "buyer_user_id": trade["buyer_id"]}

    def _order_request(self, params: Mapping[str, str]) -> tuple[str, Decimal, str, str] | dict[str, str]:
        """A signed request that starts an order: (out_trade_no, amount, subject, notify_url), or the
        failure node when the signature or a parameter is wrong."""
        error = self._gateway_error(params)
        if error is not None:
            return error
        biz = _json_dict(params.get("biz_content", "")) or {}
        out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
        notify_url = params.get("notify_url", "")
        if not (isinstance(out_trade_no, str) and out_trade_no and isinstance(subject, str) and subject and notify_url):
            return _failure("40002", "isv.invalid-parameter", "out_trade_no, subject and notify_url are required")
        amount = _opt_yuan(biz.get("total_amount"))
        if amount is None:
            return _failure("40002", "isv.invalid-parameter", "total_amount must be yuan, e.g. 99.00")
        return out_trade_no, amount, subject, notify_url

    def _precreate(self, params: Mapping[str, str]) -> dict[str, str]:
        """Face-to-face QR: the order is recorded now (auto-paid like a prepay order) and its
        `qr_code` answered; asking again for the same unpaid order answers the same code."""
        request = self._order_request(params)
        if isinstance(request, dict):
            return request
        out_trade_no, amount, subject, notify_url = request
        order = self._orders.get(out_trade_no)
        if order is not None and order.trade is not None:
            if order.trade["trade_status"] == "TRADE_CLOSED":
                return _failure("40004", "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            return _failure("40004", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if order is not None and (order.total_amount, order.subject) != (amount, subject):
            return _failure("40004", "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        if order is None:
            order = self._new_order(out_trade_no, amount, subject, notify_url, self._clock(), auto=True)
        if order.qr_code is None:
            order.qr_code = "https://qr.alipay.com/bax" + "".join(self._rng.choices(_LOWER_ALNUM, k=21))
        return {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no, "qr_code": order.qr_code}

    def _page_pay(self, params: Mapping[str, str]) -> httpx.Response:
        """The cashier page: a valid signed page.pay records the order (once) and shows it."""
        request = self._order_request(params)
        if isinstance(request, dict):
            return httpx.Response(400, headers={"Content-Type": "text/html; charset=utf-8"}, text=_page(request))
        out_trade_no, amount, subject, notify_url = request
        order = self._orders.get(out_trade_no)
        if order is None:
            order = self._new_order(out_trade_no, amount, subject, notify_url, self._clock(), auto=True)
        shown = {
            "out_trade_no": order.out_trade_no,
            "total_amount": f"{order.total_amount:.2f}",
            "subject": order.subject,
        }
        return httpx.Response(200, headers={"Content-Type": "text/html; charset=utf-8"}, text=_page(shown))

    def _answer(self, name: str, node: Mapping[str, str]) -> httpx.Response:
        """`{"<name>": {...}, "sign": "..."}`, the sign over the node's exact JSON text."""
        node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        sign = self._alipay_key.sign(node_text.encode(), padding.PKCS1v15(), hashes.SHA256())
        text = f'{{"{name}":{node_text},"sign":"{base64.b64encode(sign).decode()}"}}'
        return httpx.Response(200, headers={"Content-Type": "application/json; charset=utf-8"}, content=text.encode())

    def _record_call(self, request: httpx.Request, params: Mapping[str, str]) -> None:
        biz = _json_dict(params.get("biz_content", "")) or {}
        out_trade_no = biz.get("out_trade_no")
        body = {k: v for k, v in params.items() if k != "sign"}
        self._log.record(Call(request.method, request.url.path, self._clock(), params.get("app_id", ""),
                              out_trade_no if isinstance(out_trade_no, str) else None, body))  # fmt: skip


# --- helpers ---------------------------------------------------------------------------------------


def _new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _verify(key: RSAPublicKey, signature: str, message: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _sign_content(params: Mapping[str, str], *, drop: set[str]) -> bytes:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in drop and v != "").encode()


def _compact(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _json_dict(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _gateway_params(request: httpx.Request) -> dict[str, str]:
    """Query string and form body together (the SDKs split common parameters between them)."""
    params = dict(request.url.params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _failure(code: str, sub_code: str, sub_msg: str) -> dict[str, str]:
    msg = {"40002": "Invalid Arguments", "40004": "Business Failed"}.get(code, "Failed")
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _page(fields: Mapping[str, str]) -> str:
    rows = "".join(f"<li>{k}: {v}</li>" for k, v in fields.items())
    return f"<!doctype html><html><body><h1>Alipay simulator cashier</h1><ul>{rows}</ul></body></html>"


def _yuan(value: object) -> Decimal:
    """A positive amount of yuan with at most two decimals, from a string or a number."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount of yuan: {value!r}") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"not an amount of yuan: {value!r}")
    return amount


def _opt_yuan(value: object) -> Decimal | None:
    try:
        return _yuan(value)
    except ValueError:
        return None


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _trade_no(now: float, rng: random.Random) -> str:
    """28 digits: the date, `2200` and 16 more, shaped like Alipay's."""
    return datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d") + "2200" + "".join(rng.choices(string.digits, k=16))


def _beijing(at: float) -> str:
    return datetime.fromtimestamp(at, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(int(at), BEIJING).isoformat()
