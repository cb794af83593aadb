"""Alipay simulator (VENDORS.md §8.2, §8.3, §11): the signed gateway (`alipay.trade.query`,
`alipay.trade.precreate`, `alipay.trade.page.pay`) and RSA2 notifies (the sending is
`vendors.sim.notifier`'s).

Keys: it keeps Alipay's private key and publishes `alipay_public_key`, the key genq is configured
with. The app side is the other way round: in reality the app makes its key and uploads the public
half, so the simulator also makes an app pair and hands out `app_private_key` like a sandbox console
would; further app public keys (configured real ones) can be trusted with `app_public_keys=`.

Orders come from `precreate` (made server-side, like WeChat's prepay), from `page.pay` when the
payer's browser opens the cashier URL, or from `pay(...)` naming its own `notify_url`. A notify is
acknowledged only by HTTP 200 with a body of exactly `success`. `alipay.trade.query` answers
ACQ.TRADE_NOT_EXIST for an order until it is paid or closed (as real Alipay does for a QR nobody
has scanned yet); there is no WAIT_BUYER_PAY state here.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Final
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from vendors.alipay import sign_content
from vendors.plumbing import json_object, rsa_verified
from vendors.sim.common import Call
from vendors.sim.notifier import BEIJING, AlreadyPaid, Deliver, Pending, SenderKnobs, SenderSim, new_key

ALIPAY_GATEWAY: Final = "/gateway.do"
ALIPAY_PAY: Final = "/__sim/alipay/pay"
ALIPAY_NOTIFIED: Final = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"})
_LOWER_ALNUM: Final = string.ascii_lowercase + string.digits


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


class AlipaySim(SenderSim[AlipayKnobs, "_AliOrder"]):
    """Alipay: the signed gateway (`alipay.trade.query`, `alipay.trade.precreate`,
    `alipay.trade.page.pay`) and RSA2 notifies."""

    _name = "alipay-sim"
    _amount_name = "total_amount"
    _pay_path = ALIPAY_PAY

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
        self._alipay_key = new_key()
        self.alipay_public_key: RSAPublicKey = self._alipay_key.public_key()
        self.app_private_key: RSAPrivateKey = new_key()
        self._app_keys = [self.app_private_key.public_key(), *app_public_keys]
        self._seller_id = "2088" + "".join(self._rng.choice(string.digits) for _ in range(12))

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
            make = None
            if amount is not None and notify_url is not None:
                make = partial(self._new_order, out_trade_no, amount, "genq order", notify_url, now, auto=False)
            return self._pay_order(self._payable(out_trade_no, make), trade_status, amount, now)

    def _pay_options(self, out_trade_no: str, options: Mapping[str, object]) -> str:
        names = ("trade_status", "total_amount", "notify_url")
        if set(options) - set(names) or not all(isinstance(options.get(n, ""), str) for n in names):
            raise ValueError(f"options are {', '.join(names)} (strings); got {sorted(options)}")
        status, total, url = (options.get(n) for n in names)
        return self.pay(out_trade_no, trade_status=_opt(status), total_amount=_opt(total), notify_url=_opt(url))

    def _pay_order(self, order: _AliOrder, status: str | None, amount: Decimal | None, now: float) -> str:
        if order.trade is not None:
            raise AlreadyPaid(f"order {order.out_trade_no!r} is already {order.trade['trade_status']}")
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
        self._queue(Pending(now, order.notify_url, urlencode(form).encode(), order.out_trade_no, 0))
        return order.trade["trade_no"]

    def _notify_sign(self, form: Mapping[str, str], tamper: bool) -> str:
        content = sign_content(form, drop=frozenset({"sign", "sign_type"})) + (b"tampered" if tamper else b"")
        return base64.b64encode(self._alipay_key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()

    def _headers(self, pending: Pending, now: float) -> dict[str, str]:
        return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

    def _acknowledged(self, status: int, answer: bytes) -> bool:
        return status == 200 and answer == b"success"

    def _auto_pay(self, now: float) -> None:
        for order in self._orders.values():
            if order.trade is None and order.auto_pay_at is not None and order.auto_pay_at <= now:
                self._pay_order(order, None, None, now)

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

    def _vendor(self, request: httpx.Request) -> httpx.Response:
        """`/gateway.do`: the request's signature checked, the answer signed."""
        if request.url.path != ALIPAY_GATEWAY or request.method not in ("GET", "POST"):
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
        content = sign_content(params, drop=frozenset({"sign"}))
        if not any(rsa_verified(key, params.get("sign", ""), content) for key in self._app_keys):
            return _failure("40002", "isv.invalid-signature", "验签出错")
        return None

    def _query(self, params: Mapping[str, str]) -> dict[str, str]:
        biz = json_object(params.get("biz_content", ""))
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
        biz = json_object(params.get("biz_content", "")) or {}
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
        biz = json_object(params.get("biz_content", "")) or {}
        out_trade_no = biz.get("out_trade_no")
        body = {k: v for k, v in params.items() if k != "sign"}
        self._log.record(Call(request.method, request.url.path, self._clock(), params.get("app_id", ""),
                              out_trade_no if isinstance(out_trade_no, str) else None, body))  # fmt: skip


# --- helpers ---------------------------------------------------------------------------------------


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
