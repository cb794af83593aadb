"""Alipay open platform (VENDORS.md §8.2): the async notify genq receives and the gateway calls it makes.

Notify: a form POST whose `sign` is SHA256withRSA (RSA2) by the Alipay public key over the other
parameters, `sign` and `sign_type` dropped, sorted by name, empty values skipped, joined `k=v` with
`&`. `parse_notify` verifies it, checks our `app_id`, and returns the `AlipayTrade`; every refusal
is `NotifyRejected(reason)`. genq answers exactly `ACK` ("success") once the payment is recorded
(idempotent on `trade_no`); anything else makes Alipay resend.

Gateway (`AlipayClient`): requests are signed the same way with the app private key (only `sign`
dropped: `sign_type` is signed too). An answer is `{"<method>_response": {...}, "sign": "..."}`
whose `sign` covers the exact JSON text of the response node, so it is verified on the raw bytes
before anything is parsed. A value is only returned from a signed answer; errors raise either way.
`precreate` (face-to-face QR, `alipay.trade.precreate`) is a server-side call: Alipay records the
order at once and answers the `qr_code` the payer scans. `page_pay` makes no call: it builds the
signed cashier URL the payer's browser opens, and Alipay learns of the order only when it is opened.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Final

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from vendors.base import MessageRejected, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.plumbing import rsa_verified

VENDOR: Final = "alipay"
GATEWAY_PATH: Final = "/gateway.do"
ACK: Final = "success"
"""The only answer that stops Alipay's resends: exactly these 7 characters, HTTP 200."""
NACK: Final = "fail"
QUERY_METHOD: Final = "alipay.trade.query"
PAGE_PAY_METHOD: Final = "alipay.trade.page.pay"
PRECREATE_METHOD: Final = "alipay.trade.precreate"
TRADE_NOT_EXIST: Final = "ACQ.TRADE_NOT_EXIST"
PAID: Final = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
"""The trade states that grant (§8.2); TRADE_CLOSED and WAIT_BUYER_PAY never do."""
TRANSIENT: Final = frozenset({"20000", "ACQ.SYSTEM_ERROR", "isp.unknow-error"})
"""Gateway codes / sub_codes that mean "try again later"; any other error is permanent."""
BEIJING: Final = timezone(timedelta(hours=8))
CENT: Final = Decimal("0.01")


class NotifyRejected(MessageRejected):
    """A notify that must not be trusted; `reason` is stable: malformed, unsupported_sign_type,
    bad_signature or wrong_app."""

    what = "alipay notify"


@dataclass(frozen=True)
class AlipayTrade:
    """A trade as Alipay reports it; `total_amount` in yuan. `notify_id` only on notifies (it stays
    the same across resends). The caller compares out_trade_no and total_amount to its order."""

    out_trade_no: str
    trade_no: str
    trade_status: str
    total_amount: Decimal
    app_id: str
    notify_id: str | None
    raw: Mapping[str, object] = field(compare=False, repr=False)


def sign_content(params: Mapping[str, str], *, drop: frozenset[str]) -> bytes:
    """Alipay's signed text: parameters not in `drop` and not empty, sorted by name, `k=v&k=v`."""
    pairs = sorted((k, v) for k, v in params.items() if k not in drop and v != "")
    return "&".join(f"{k}={v}" for k, v in pairs).encode()


def verify_notify(form: Mapping[str, str], *, alipay_public_key: RSAPublicKey) -> None:
    """Raise `NotifyRejected` unless the (URL-decoded) form is signed RSA2 by Alipay."""
    sign, sign_type = form.get("sign"), form.get("sign_type")
    if not sign or not sign_type:
        raise NotifyRejected("malformed")
    if sign_type != "RSA2":
        raise NotifyRejected("unsupported_sign_type")
    content = sign_content(form, drop=frozenset({"sign", "sign_type"}))
    if not rsa_verified(alipay_public_key, sign, content):
        raise NotifyRejected("bad_signature")


def parse_notify(form: Mapping[str, str], *, alipay_public_key: RSAPublicKey, app_id: str) -> AlipayTrade:
    """Verify the notify, check it is for `app_id`, and read the trade."""
    verify_notify(form, alipay_public_key=alipay_public_key)
    if form.get("app_id") != app_id:
        raise NotifyRejected("wrong_app")
    try:
        return trade_of(form, app_id=app_id)
    except ValueError:
        raise NotifyRejected("malformed") from None


def trade_of(data: Mapping[str, object], *, app_id: str) -> AlipayTrade:
    """The `AlipayTrade` of a notify form or a query answer; ValueError when misshapen."""
    names = ("out_trade_no", "trade_no", "trade_status", "total_amount")
    values = [data.get(name) for name in names]
    if not all(isinstance(value, str) and value for value in values):
        raise ValueError(f"{', '.join(names)} must be non-empty strings")
    out_trade_no, trade_no, trade_status, total = (str(value) for value in values)
    try:
        amount = Decimal(total)
    except InvalidOperation:
        raise ValueError("total_amount is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("total_amount is not an amount")
    notify_id = data.get("notify_id")
    return AlipayTrade(out_trade_no, trade_no, trade_status, amount, app_id,
                       notify_id if isinstance(notify_id, str) and notify_id else None, data)  # fmt: skip


# --- gateway calls ---------------------------------------------------------------------------------


class AlipayClient:
    """`alipay.trade.query` (re-check for a lost notify), `alipay.trade.precreate` (a QR order made
    server-side) and the `alipay.trade.page.pay` URL."""

    name = VENDOR

    def __init__(
        self,
        http: httpx.Client,
        *,
        app_id: str,
        private_key: RSAPrivateKey,
        alipay_public_key: RSAPublicKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http  # base_url (the gateway's scheme://host) and timeouts come from the caller
        self._app_id = app_id
        self._key = private_key
        self._alipay_key = alipay_public_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"AlipayClient(app_id={self._app_id!r})"

    def page_pay(self, out_trade_no: str, total_yuan: Decimal, subject: str, notify_url: str) -> str:
        """The signed cashier URL (computer-website payment) genq hands the payer; no call is made."""
        biz = {**_order_biz(out_trade_no, total_yuan, subject), "product_code": "FAST_INSTANT_TRADE_PAY"}
        params = self._signed(PAGE_PAY_METHOD, biz, notify_url=notify_url)
        return str(self._http.build_request("GET", GATEWAY_PATH, params=params).url)

    def precreate(self, out_trade_no: str, total_yuan: Decimal, subject: str, notify_url: str) -> dict[str, str]:
        """Create the order at Alipay now (face-to-face QR); `{"qr_code", "out_trade_no"}` from a
        signed success. Transient gateway codes raise VendorUnavailable, others VendorRejected."""
        biz = _order_biz(out_trade_no, total_yuan, subject)
        node, signed = self._call(PRECREATE_METHOD, biz, notify_url=notify_url)
        code, sub_code = str(node.get("code", "")), str(node.get("sub_code", ""))
        if code != "10000":
            raise _error(code, sub_code, node.get("sub_msg") or node.get("msg"))
        if not signed:
            raise VendorProtocolError(VENDOR, "unsigned_response")
        qr_code, answered = node.get("qr_code"), node.get("out_trade_no")
        if not isinstance(qr_code, str) or not qr_code or answered != out_trade_no:
            raise VendorProtocolError(VENDOR, "bad_precreate", "qr_code missing or out_trade_no not ours")
        return {"qr_code": qr_code, "out_trade_no": out_trade_no}

    def query(self, out_trade_no: str) -> AlipayTrade | None:
        """The trade as Alipay knows it now; None while it does not exist (a page.pay URL never
        opened, a precreated QR order not paid yet in the simulator, or unknown)."""
        node, signed = self._call(QUERY_METHOD, {"out_trade_no": out_trade_no})
        code, sub_code = str(node.get("code", "")), str(node.get("sub_code", ""))
        if code == "10000" or sub_code == TRADE_NOT_EXIST:
            if not signed:
                raise VendorProtocolError(VENDOR, "unsigned_response")
            return None if code != "10000" else self._trade(node)
        raise _error(code, sub_code, node.get("sub_msg") or node.get("msg"))

    def _call(self, method: str, biz: Mapping[str, str], **extra: str) -> tuple[dict[str, object], bool]:
        """POST the signed request to the gateway: the answer's response node and whether it was
        signed (a wrong signature raises); transport and HTTP failures are classified here."""
        params = self._signed(method, biz, **extra)
        try:
            resp = self._http.post(GATEWAY_PATH, data=params)
        except httpx.TransportError as exc:
            raise VendorUnavailable(VENDOR, "transport", type(exc).__name__) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise VendorUnavailable(VENDOR, f"http_{resp.status_code}")
        if resp.is_error:
            raise VendorRejected(VENDOR, f"http_{resp.status_code}")
        return self._answer(resp.content, method)

    def _trade(self, node: Mapping[str, object]) -> AlipayTrade:
        try:
            return trade_of(node, app_id=self._app_id)
        except ValueError as exc:
            raise VendorProtocolError(VENDOR, "bad_trade", str(exc)) from None

    def _signed(self, method: str, biz: Mapping[str, str], **extra: str) -> dict[str, str]:
        """The common parameters plus `biz_content`, signed RSA2 with the app key (`sign` excluded)."""
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.fromtimestamp(self._clock(), BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
            **extra,
        }
        content = sign_content(params, drop=frozenset({"sign"}))
        params["sign"] = base64.b64encode(self._key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()
        return params

    def _answer(self, raw: bytes, method: str) -> tuple[dict[str, object], bool]:
        """The response node and whether its signature checked out; a wrong signature raises."""
        try:
            text = raw.decode("utf-8")
            outer = json.loads(text)
        except ValueError:
            raise VendorProtocolError(VENDOR, "not_json") from None
        name = method.replace(".", "_") + "_response"
        if not isinstance(outer, dict) or not isinstance(outer.get(name, outer.get("error_response")), dict):
            raise VendorProtocolError(VENDOR, "bad_envelope")
        if name not in outer:
            return outer["error_response"], False
        node, sign = outer[name], outer.get("sign")
        if not isinstance(sign, str) or not sign:
            return node, False
        node_text = _node_text(text, name, node)
        if node_text is None or not rsa_verified(self._alipay_key, sign, node_text.encode()):
            raise VendorProtocolError(VENDOR, "bad_response_signature")
        return node, True


# --- helpers ---------------------------------------------------------------------------------------


def _order_biz(out_trade_no: str, total_yuan: Decimal, subject: str) -> dict[str, str]:
    """The `biz_content` an order starts with; ValueError unless 0.01..100000000 yuan in cents."""
    if not total_yuan.is_finite() or total_yuan.quantize(CENT) != total_yuan or not CENT <= total_yuan <= 100_000_000:
        raise ValueError("total_yuan must be 0.01..100000000 with at most two decimals")
    return {"out_trade_no": out_trade_no, "total_amount": f"{total_yuan.quantize(CENT):f}", "subject": subject}


def _node_text(text: str, name: str, node: object) -> str | None:
    """The exact JSON text of `"name": {...}` in the answer (what Alipay signed), or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(rf'"{re.escape(name)}"\s*:\s*', text):
        try:
            value, end = decoder.raw_decode(text, match.end())
        except ValueError:
            continue
        if value == node:
            return text[match.end() : end]
    return None


_SAFE = re.compile(r"[^\w.-]")


def _error(code: str, sub_code: str, message: object) -> VendorUnavailable | VendorRejected:
    tag = _SAFE.sub("", sub_code or code)[:60] or "unknown"
    detail = message[:300] if isinstance(message, str) else ""
    if code in TRANSIENT or sub_code in TRANSIENT:
        return VendorUnavailable(VENDOR, f"alipay_{tag}", detail)
    return VendorRejected(VENDOR, f"alipay_{tag}", detail)
