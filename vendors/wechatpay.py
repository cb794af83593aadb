"""WeChat Pay API v3 (VENDORS.md §8.1): the notifications genq receives and the merchant calls it makes.

Notifications: `verify_notification` checks the `Wechatpay-*` headers (RSASSA-PKCS1-v1_5 SHA-256 over
`timestamp\\nnonce\\nbody\\n`, key chosen by `Wechatpay-Serial`), `decrypt_resource` opens the
AES-256-GCM `resource` with the APIv3 key, and `parse_notification` does both and returns the
`Transaction`. Every refusal is `NotificationRejected(reason)`; genq answers `nack(...)` and WeChat
resends on its schedule, or `ACK` once the payment is recorded (idempotent on `transaction_id`).

Merchant calls (`WechatPayClient`): each request carries the `WECHATPAY2-SHA256-RSA2048`
Authorization signed with the merchant private key; each 2xx answer must be signed like a
notification, else `VendorProtocolError`. Only 2xx answers are verified (as the official SDKs do):
an unsigned error can only ever raise, never grant. Keys never appear in exceptions or reprs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vendors.base import MessageRejected, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.plumbing import json_object, rsa_verified

VENDOR: Final = "wechatpay"
SIGNATURE_TYPE: Final = "WECHATPAY2-SHA256-RSA2048"
PROBE_PREFIX: Final = "WECHATPAY/SIGNTEST/"
"""WeChat's signature probes start with this and must fail verification (§8.1)."""
NATIVE_PATH: Final = "/v3/pay/transactions/native"
QUERY_PATH: Final = "/v3/pay/transactions/out-trade-no/{}"
ORDER_NOT_EXIST: Final = "ORDER_NOT_EXIST"
ALGORITHM: Final = "AEAD_AES_256_GCM"

_HEADERS: Final = ("wechatpay-serial", "wechatpay-signature", "wechatpay-timestamp", "wechatpay-nonce")


class NotificationRejected(MessageRejected):
    """A notification (or signed answer) that must not be trusted. `reason` is stable: malformed,
    probe, unknown_serial, bad_signature, stale_timestamp, undecryptable, not_a_transaction or
    wrong_merchant."""

    what = "wechatpay notification"


@dataclass(frozen=True)
class Transaction:
    """A payment as WeChat Pay reports it; `total` in fen. `transaction_id` and `success_time` are
    None until paid (NOTPAY, CLOSED...). The caller compares mchid, appid and total to its order."""

    out_trade_no: str
    transaction_id: str | None
    trade_state: str
    total: int
    currency: str
    appid: str
    mchid: str
    success_time: str | None
    raw: Mapping[str, object] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Reply:
    """What genq answers a notification: HTTP status, body and its content type."""

    status: int
    body: bytes = b""
    content_type: str | None = None


ACK: Final = Reply(204)
"""Received and recorded: 204, no body (200 works too)."""


def nack(message: str, *, status: int = 500) -> Reply:
    """A refusal WeChat will resend: 4xx/5xx with `{"code": "FAIL", "message": ...}`."""
    if status < 400:
        raise ValueError("a nack needs a 4xx or 5xx status")
    body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False).encode()
    return Reply(status, body, "application/json")


# --- notifications ---------------------------------------------------------------------------------


def verify_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_keys: Mapping[str, RSAPublicKey],
    now: float,
    window_s: float = 300,
) -> None:
    """Raise `NotificationRejected` unless the raw `body` is signed by the key its serial names.

    The signature is checked before the timestamp, so `stale_timestamp` means genuine but late (or
    replayed). An unknown serial is refused outright: nothing is fetched in public-key mode.
    """
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    serial, signature, timestamp, nonce = (lowered.get(name, "") for name in _HEADERS)
    if not (serial and signature and timestamp and nonce):
        raise NotificationRejected("malformed")
    if lowered.get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
        raise NotificationRejected("malformed")
    if signature.startswith(PROBE_PREFIX):
        raise NotificationRejected("probe")
    key = public_keys.get(serial)
    if key is None:
        raise NotificationRejected("unknown_serial")
    if not timestamp.isdigit():
        raise NotificationRejected("malformed")
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    if not rsa_verified(key, signature, message):
        raise NotificationRejected("bad_signature")
    if abs(now - int(timestamp)) > window_s:
        raise NotificationRejected("stale_timestamp")


def decrypt_resource(resource: Mapping[str, object], *, api_v3_key: str) -> dict[str, object]:
    """Open an `encrypt-resource`: AES-256-GCM, key = the 32-byte APIv3 key, nonce and AAD as UTF-8,
    ciphertext = base64(data + 16-byte tag). A wrong key or altered bytes -> `undecryptable`."""
    key = api_v3_key.encode()
    if len(key) != 32:
        raise ValueError("the APIv3 key must be 32 ASCII characters")
    ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
    aad = resource.get("associated_data") or ""
    if not (isinstance(ciphertext, str) and isinstance(nonce, str) and isinstance(aad, str)):
        raise NotificationRejected("malformed")
    if resource.get("algorithm") != ALGORITHM:
        raise NotificationRejected("undecryptable")
    try:
        plain = AESGCM(key).decrypt(nonce.encode(), base64.b64decode(ciphertext, validate=True), aad.encode())
    except (InvalidTag, binascii.Error, ValueError):
        raise NotificationRejected("undecryptable") from None
    data = json_object(plain)
    if data is None:
        raise NotificationRejected("malformed")
    return data


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_keys: Mapping[str, RSAPublicKey],
    api_v3_key: str,
    now: float,
    mchid: str | None = None,
    appid: str | None = None,
) -> Transaction:
    """Verify, decrypt and read a payment notification. Refund notices are `not_a_transaction`;
    with `mchid`/`appid` given, a transaction of another merchant is `wrong_merchant`."""
    verify_notification(headers, body, public_keys=public_keys, now=now)
    envelope = json_object(body)
    resource = envelope.get("resource") if envelope else None
    if not isinstance(resource, Mapping):
        raise NotificationRejected("malformed")
    if resource.get("original_type", "transaction") != "transaction":
        raise NotificationRejected("not_a_transaction")
    try:
        transaction = transaction_of(decrypt_resource(resource, api_v3_key=api_v3_key))
    except ValueError:
        raise NotificationRejected("malformed") from None
    if (mchid is not None and transaction.mchid != mchid) or (appid is not None and transaction.appid != appid):
        raise NotificationRejected("wrong_merchant")
    return transaction


def transaction_of(data: Mapping[str, object]) -> Transaction:
    """The `Transaction` of a decrypted notification or a query answer; ValueError when misshapen."""
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, Mapping) else None
    currency = amount.get("currency", "CNY") if isinstance(amount, Mapping) else None
    if not isinstance(total, int) or isinstance(total, bool) or not isinstance(currency, str):
        raise ValueError("amount.total must be an integer number of fen")
    names = ("out_trade_no", "trade_state", "appid", "mchid")
    out_trade_no, trade_state, appid, mchid = (_text(data, name) for name in names)
    transaction_id, success_time = _opt_text(data, "transaction_id"), _opt_text(data, "success_time")
    if trade_state == "SUCCESS" and not transaction_id:
        raise ValueError("a SUCCESS transaction needs its transaction_id")
    return Transaction(out_trade_no, transaction_id, trade_state, total, currency, appid, mchid, success_time, data)


# --- merchant calls --------------------------------------------------------------------------------


class WechatPayClient:
    """Native prepay and the order query ("re-check" for a lost notification)."""

    name = VENDOR

    def __init__(
        self,
        http: httpx.Client,
        *,
        mchid: str,
        appid: str,
        serial_no: str,
        private_key: RSAPrivateKey,
        public_keys: Mapping[str, RSAPublicKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http  # base_url and timeouts come from the caller
        self._mchid, self._appid, self._serial = mchid, appid, serial_no
        self._key = private_key
        self._public_keys = dict(public_keys)
        self._clock = clock

    def __repr__(self) -> str:
        return f"WechatPayClient(mchid={self._mchid!r}, serial_no={self._serial!r})"

    def prepay(self, out_trade_no: str, amount_fen: int, description: str, notify_url: str) -> dict[str, str]:
        """Open a Native (QR code) order; `{"code_url": ...}` is what genq hands the payer."""
        body = {
            "appid": self._appid,
            "mchid": self._mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "notify_url": notify_url,
            "amount": {"total": amount_fen, "currency": "CNY"},
        }
        data = self._call("POST", NATIVE_PATH, body=body) or {}
        code_url = data.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise VendorProtocolError(VENDOR, "missing_code_url")
        return {"code_url": code_url}

    def query(self, out_trade_no: str) -> Transaction | None:
        """The order as WeChat Pay knows it now (NOTPAY, SUCCESS, CLOSED...); None if it never was."""
        path = QUERY_PATH.format(quote(out_trade_no, safe=""))
        data = self._call("GET", path, params={"mchid": self._mchid}, missing_ok=True)
        if data is None:
            return None
        try:
            return transaction_of(data)
        except ValueError as exc:
            raise VendorProtocolError(VENDOR, "bad_transaction", str(exc)) from None

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, object] | None:
        """One signed call: the verified 2xx JSON object, None for ORDER_NOT_EXIST when
        `missing_ok`, else the error's bucket."""
        content = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"} | ({"Content-Type": "application/json"} if content else {})
        request = self._http.build_request(method, path, params=params, content=content or None, headers=headers)
        request.headers["Authorization"] = self._authorization(request, content)
        try:
            resp = self._http.send(request)
        except httpx.TransportError as exc:
            raise VendorUnavailable(VENDOR, "transport", type(exc).__name__) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise VendorUnavailable(VENDOR, f"http_{resp.status_code}")
        if resp.is_error:
            code, message = _error_of(resp)
            if missing_ok and resp.status_code == 404 and code == ORDER_NOT_EXIST:
                return None
            raise VendorRejected(VENDOR, f"wechatpay_{code}" if code else f"http_{resp.status_code}", message)
        try:
            verify_notification(resp.headers, resp.content, public_keys=self._public_keys, now=self._clock())
        except NotificationRejected as exc:
            raise VendorProtocolError(VENDOR, f"response_{exc.reason}") from None
        data = json_object(resp.content)
        if data is None:
            raise VendorProtocolError(VENDOR, "not_json")
        return data

    def _authorization(self, request: httpx.Request, content: bytes) -> str:
        """`METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`, signed with the merchant key (§8.1)."""
        timestamp, nonce = str(int(self._clock())), secrets.token_hex(16).upper()
        target = request.url.raw_path.decode("ascii")
        message = f"{request.method}\n{target}\n{timestamp}\n{nonce}\n".encode() + content + b"\n"
        signature = base64.b64encode(self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
        fields = {"mchid": self._mchid, "nonce_str": nonce, "signature": signature,
                  "timestamp": timestamp, "serial_no": self._serial}  # fmt: skip
        return f"{SIGNATURE_TYPE} " + ",".join(f'{k}="{v}"' for k, v in fields.items())


# --- helpers ---------------------------------------------------------------------------------------


def _text(data: Mapping[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _opt_text(data: Mapping[str, object], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


_SAFE = re.compile(r"[^\w .:-]")


def _error_of(resp: httpx.Response) -> tuple[str, str]:
    """`{"code", "message"}` of an error answer, trimmed to safe characters."""
    data = json_object(resp.content) or {}
    code, message = data.get("code"), data.get("message")
    code_text = _SAFE.sub("", code)[:60] if isinstance(code, str) else ""
    return code_text, message[:300] if isinstance(message, str) else ""
