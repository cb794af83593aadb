"""WeChat Pay v3 simulator (VENDORS.md §8.1, §8.3, §11): Native prepay, the signed order query, and
signed + encrypted payment notifications (the sending is `vendors.sim.notifier`'s).

Keys: it keeps the platform's private key and publishes the public half genq is configured with
(`public_key` + its `serial` `PUB_KEY_ID_SIM...`). The merchant side is the other way round: in
reality the merchant makes its key and uploads the public half, so the simulator also makes a
merchant pair and hands out the private half (`merchant_private_key` + `merchant_serial`) like a
sandbox console would; further merchant public keys (configured real ones) can be trusted with
`merchant_public_keys=`. The APIv3 key is the one given, else 32 random characters (`api_v3_key`).

Orders come from Native prepay or from `pay(...)` naming its own `notify_url`. A notification is
acknowledged by HTTP 200 or 204; every answer of the API is signed like a notification.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Final

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vendors.plumbing import json_object, rsa_verified
from vendors.sim.common import Call, check_non_negative, mask_key
from vendors.sim.notifier import BEIJING, AlreadyPaid, Deliver, PayError, Pending, SenderKnobs, SenderSim, new_key

WECHAT_NATIVE: Final = "/v3/pay/transactions/native"
WECHAT_QUERY: Final = re.compile(r"/v3/pay/transactions/out-trade-no/([^/]+)")
WECHAT_PAY: Final = "/__sim/wechatpay/pay"
_ALNUM: Final = string.ascii_letters + string.digits


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


class WechatPaySim(SenderSim[WechatPayKnobs, "_WxOrder"]):
    """WeChat Pay v3: Native prepay, the signed order query, and signed + encrypted notifications."""

    _name = "wechatpay-sim"
    _pay_path = WECHAT_PAY

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
        self._platform_key = new_key()
        self.public_key: RSAPublicKey = self._platform_key.public_key()
        self.serial = "PUB_KEY_ID_SIM" + "".join(secrets.choice(string.digits) for _ in range(24))
        self.merchant_private_key: RSAPrivateKey = new_key()
        self.merchant_serial = secrets.token_hex(20).upper()
        self._merchant_keys = {self.merchant_serial: self.merchant_private_key.public_key(),
                               **(merchant_public_keys or {})}  # fmt: skip

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
            make = None
            if amount is not None and notify_url is not None:
                make = partial(self._new_order, out_trade_no, amount, "", notify_url, now, auto=False)
            return self._pay_order(self._payable(out_trade_no, make), amount, now)

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
            raise AlreadyPaid(f"order {order.out_trade_no!r} is already paid")
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
        self._queue(Pending(now, order.notify_url, body, order.out_trade_no, 0, tamper=knobs.tamper_signature,
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

    def _headers(self, pending: Pending, now: float) -> dict[str, str]:
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

    def _vendor(self, request: httpx.Request) -> httpx.Response:
        """A vendor path: the merchant's signature checked, the answer signed."""
        path = request.url.path
        query = WECHAT_QUERY.fullmatch(path) if request.method == "GET" else None
        if query is None and (request.method, path) != ("POST", WECHAT_NATIVE):
            return self._answer(404, {"code": "NOT_FOUND", "message": "no such API"})
        body = json_object(request.content.decode("utf-8", "replace")) if query is None else {}
        out_trade_no = query.group(1) if query else (body or {}).get("out_trade_no")
        with self._lock:
            self._record_call(request, out_trade_no if isinstance(out_trade_no, str) else None, body)
            injected = self._injected_failure(request)
            if injected is not None:
                return injected
            try:
                self._check_authorization(request)
                payload = self._query(request, query.group(1)) if query else self._prepay(body)
            except PayError as exc:
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
            raise PayError(401, "SIGN_ERROR", "签名错误: unknown merchant or certificate serial")
        if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > 300:
            raise PayError(401, "SIGN_ERROR", "签名错误: timestamp out of range")
        target = request.url.raw_path.decode("ascii")
        message = f"{request.method}\n{target}\n{timestamp}\n{fields.get('nonce_str', '')}\n".encode()
        if not rsa_verified(key, fields.get("signature", ""), message + request.content + b"\n"):
            raise PayError(401, "SIGN_ERROR", "签名错误")

    def _prepay(self, body: Mapping[str, object] | None) -> dict[str, object]:
        if body is None:
            raise PayError(400, "PARAM_ERROR", "body must be a JSON object")
        amount = body.get("amount")
        total = amount.get("total") if isinstance(amount, Mapping) else None
        out_trade_no, notify_url = body.get("out_trade_no"), body.get("notify_url")
        description = body.get("description")
        if body.get("mchid") != self.mchid or body.get("appid") != self.appid:
            raise PayError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise PayError(400, "PARAM_ERROR", "amount.total must be a positive integer")
        if not isinstance(out_trade_no, str) or not re.fullmatch(r"[\w|*@-]{6,32}", out_trade_no):
            raise PayError(400, "PARAM_ERROR", "out_trade_no must be 6-32 of [A-Za-z0-9_-|*@]")
        if not isinstance(notify_url, str) or not notify_url.startswith(("http://", "https://")):
            raise PayError(400, "PARAM_ERROR", "notify_url must be a URL")
        if not isinstance(description, str) or not 0 < len(description) <= 127:
            raise PayError(400, "PARAM_ERROR", "description must be 1-127 characters")
        order = self._orders.get(out_trade_no)
        if order is not None and (order.total != total or order.paid is not None):
            raise PayError(400, "OUT_TRADE_NO_USED", "商户订单号重复")
        if order is None:
            order = self._new_order(out_trade_no, total, description, notify_url, self._clock(), auto=True)
        return {"code_url": order.code_url}

    def _query(self, request: httpx.Request, out_trade_no: str) -> dict[str, object]:
        if request.url.params.get("mchid") != self.mchid:
            raise PayError(400, "PARAM_ERROR", "mchid must be the merchant's")
        order = self._orders.get(out_trade_no)
        if order is None:
            raise PayError(404, "ORDER_NOT_EXIST", "订单不存在")
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


def _compact(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(int(at), BEIJING).isoformat()
