"""Tencent Cloud API 3.0 (VENDORS.md §1): the TC3-HMAC-SHA256 signer and the call core that every
Tencent product client shares (ai3d now; SMS and STS later).

The signer is a set of pure functions (no clock, no I/O) so the simulator can verify with the very
steps the client signs with; the published examples in Tencent's "签名方法 v3" page pin them down.
`TencentCloudApi.call` signs exactly the `Host` and body httpx will send, POSTs `/`, and turns the
`Response` envelope into the action's fields or one of the error buckets of `vendors.base`: business
errors arrive as HTTP 200 with `Response.Error`, classified by the `BUCKETS` table of code patterns.
The SecretKey never leaves this module: not in a header, an exception or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx

from vendors.base import (
    VendorBusy,
    VendorError,
    VendorExpired,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
    transport_error,
)

ALGORITHM: Final = "TC3-HMAC-SHA256"
CONTENT_TYPE: Final = "application/json"  # exactly what the Python SDK sends for POST
TERMINATOR: Final = "tc3_request"

BUCKETS: Final[Mapping[str, type[VendorError]]] = {
    "RequestLimitExceeded.JobNumExceed": VendorBusy,
    "LimitExceeded": VendorBusy,
    "RequestLimitExceeded*": VendorBusy,  # QPS limits: back-pressure, not a spent attempt (SPEC §6)
    "InternalError*": VendorUnavailable,
    "ServiceUnavailable*": VendorUnavailable,
    "FailedOperation.Engine*": VendorUnavailable,
    "AuthFailure.SignatureExpire": VendorUnavailable,  # clock skew: the next call is signed afresh
    "InvalidParameter*": VendorRejected,
    "MissingParameter*": VendorRejected,
    "UnknownParameter*": VendorRejected,
    "AuthFailure*": VendorRejected,
    "UnauthorizedOperation*": VendorRejected,
    "OperationDenied*": VendorRejected,
    "ResourceUnavailable*": VendorRejected,
    "ResourceInsufficient*": VendorRejected,
    "FailedOperation*": VendorRejected,
}
"""`Response.Error.Code` pattern -> bucket (VENDORS.md §1.5, §10). `X` matches the code `X` only,
`X*` every code starting with `X`; the longest pattern wins, and an unlisted code is permanent."""

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")


# --- the signer (VENDORS.md §1.3) ----------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_date(timestamp: int) -> str:
    """The credential-scope date: the UTC calendar day of the timestamp, never local time."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def canonical_request(*, method: str, query: str, headers: Mapping[str, str], payload: bytes) -> str:
    """The six-line canonical request over the given (signed) headers, names and values lower-cased."""
    items = sorted((name.strip().lower(), value.strip().lower()) for name, value in headers.items())
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in items)
    signed = ";".join(name for name, _ in items)
    return "\n".join((method.upper(), "/", query, canonical_headers, signed, sha256_hex(payload)))


def string_to_sign(*, timestamp: int, service: str, canonical: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/{TERMINATOR}"
    return "\n".join((ALGORITHM, str(timestamp), scope, sha256_hex(canonical.encode())))


def tc3_signature(secret_key: str, *, timestamp: int, service: str, to_sign: str) -> str:
    """Hex HMAC-SHA256 of the string to sign under the derived key `TC3+key -> date -> service -> tc3_request`."""
    key = ("TC3" + secret_key).encode()
    for part in (utc_date(timestamp), service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def sign_tc3(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    timestamp: int,
    headers: Mapping[str, str],
    payload: bytes,
    method: str = "POST",
    query: str = "",
) -> str:
    """The `Authorization` value for a request; `headers` are the signed ones (content-type and host
    at least, as sent)."""
    canonical = canonical_request(method=method, query=query, headers=headers, payload=payload)
    to_sign = string_to_sign(timestamp=timestamp, service=service, canonical=canonical)
    signature = tc3_signature(secret_key, timestamp=timestamp, service=service, to_sign=to_sign)
    signed = ";".join(sorted(name.strip().lower() for name in headers))
    scope = f"{utc_date(timestamp)}/{service}/{TERMINATOR}"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed}, Signature={signature}"


@dataclass(frozen=True)
class Tc3Authorization:
    """A parsed `Authorization` header, for the receiving side."""

    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


_AUTHORIZATION = re.compile(
    rf"{ALGORITHM} Credential=([^/\s,]+)/(\d{{4}}-\d{{2}}-\d{{2}})/([a-z0-9]+)/{TERMINATOR}, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})"
)


def parse_authorization(value: str) -> Tc3Authorization | None:
    """The header's parts, or None when it is not a well-formed TC3 authorization."""
    match = _AUTHORIZATION.fullmatch(value.strip())
    if match is None:
        return None
    secret_id, date, service, signed, signature = match.groups()
    return Tc3Authorization(secret_id, date, service, tuple(signed.split(";")), signature)


# --- classification ------------------------------------------------------------------------------


def bucket_for(code: str, table: Mapping[str, type[VendorError]] = BUCKETS) -> type[VendorError]:
    """The bucket of the longest matching pattern (an exact pattern beats a prefix of equal length)."""
    best: tuple[int, int] = (-1, -1)
    bucket: type[VendorError] = VendorRejected
    for pattern, candidate in table.items():
        stem = pattern.removesuffix("*")
        exact = stem == pattern
        if (code == stem) if exact else code.startswith(stem):
            rank = (len(stem), int(exact))
            if rank > best:
                best, bucket = rank, candidate
    return bucket


# --- the call core ----------------------------------------------------------------------------------


class TencentCloudApi:
    """One product's API 3.0 surface: `call(action, params)` -> the action's response fields."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        vendor: str,
        service: str,
        version: str,
        secret_id: str,
        secret_key: str,
        region: str | None,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        buckets: Mapping[str, type[VendorError]] = BUCKETS,
    ) -> None:
        if not secret_id or not secret_key:
            raise ValueError(f"{vendor}: secret_id and secret_key are required")
        self._http = http  # base_url (the endpoint) and timeouts come from the caller
        self.vendor = vendor
        self._service, self._version, self._region = service, version, region
        self._secret_id, self._secret_key, self._token = secret_id, secret_key, token
        self._clock = clock
        self._buckets = buckets

    def __repr__(self) -> str:
        return f"TencentCloudApi(service={self._service!r}, secret_id={self._secret_id!r}, secret_key='****')"

    def call(
        self,
        action: str,
        params: Mapping[str, object],
        *,
        trace_id: str | None = None,
        expired: Collection[str] = (),
        creates: bool = False,
    ) -> dict[str, object]:
        """POST one signed action; return `Response` without `RequestId`, or raise by bucket.

        `expired` lists code patterns that mean "the vendor no longer knows this id" for this call.
        `creates`: the action starts vendor work (a Submit), so a lost answer is `VendorOutcomeUnknown`
        rather than `VendorUnavailable`; API 3.0 has no idempotency token to make a retry safe.
        """
        request = self._signed_request(action, params, trace_id)
        try:
            resp = self._http.send(request)
        except httpx.TransportError as exc:  # no answer: never sent, or sent and the answer lost
            raise transport_error(self.vendor, exc, creates=creates, scrub=self._scrub) from exc
        body = self._response(resp)
        error = body.get("Error")
        if error is not None:
            raise self._error(error, body["RequestId"], expired)
        return {k: v for k, v in body.items() if k != "RequestId"}

    def _signed_request(self, action: str, params: Mapping[str, object], trace_id: str | None) -> httpx.Request:
        payload = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(self._clock())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "X-TC-Action": action,
            "X-TC-Version": self._version,
            "X-TC-Timestamp": str(timestamp),
            **({"X-TC-Region": self._region} if self._region else {}),
            **({"X-TC-Token": self._token} if self._token else {}),
            **({"X-TC-TraceId": trace_id} if trace_id else {}),
        }
        request = self._http.build_request("POST", "/", content=payload, headers=headers)
        signed = {"content-type": request.headers["content-type"], "host": request.headers["host"]}
        request.headers["Authorization"] = sign_tc3(
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            service=self._service,
            timestamp=timestamp,
            headers=signed,
            payload=payload,
        )
        return request

    def _response(self, resp: httpx.Response) -> dict[str, object]:
        """The `Response` object of a 200 answer; anything else is transient or contract drift."""
        if resp.status_code != 200:
            hint = resp.headers.get("retry-after", "")
            retry_after_ms = int(hint) * 1000 if hint.isdigit() else None
            raise VendorUnavailable(self.vendor, f"http_{resp.status_code}", retry_after_ms=retry_after_ms)
        try:
            envelope = resp.json()
        except ValueError:
            raise VendorProtocolError(self.vendor, "not_json", self._scrub(resp.text)[:120]) from None
        body = envelope.get("Response") if isinstance(envelope, dict) else None
        if not isinstance(body, dict):
            raise VendorProtocolError(self.vendor, "bad_envelope", self._scrub(resp.text)[:120])
        if not isinstance(body.get("RequestId"), str):
            raise VendorProtocolError(self.vendor, "missing_RequestId", self._scrub(resp.text)[:120])
        return body

    def _error(self, error: object, request_id: object, expired: Collection[str]) -> VendorError:
        code = error.get("Code") if isinstance(error, dict) else None
        message = error.get("Message") if isinstance(error, dict) else None
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            return VendorProtocolError(self.vendor, "bad_error", self._scrub(repr(error))[:120])
        table = {**self._buckets, **dict.fromkeys(expired, VendorExpired)}
        detail = self._scrub(f"{message if isinstance(message, str) else ''} (RequestId {request_id})")
        return bucket_for(code, table)(self.vendor, f"tencent_{code}", detail[:300])

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret_key, "****")


class TencentClient:
    """A product client on API 3.0: its `_api` is built from the class's `name` (the vendor),
    `service`, `version` and `buckets`; the product keeps its actions and fields."""

    name: str
    service: str
    version: str
    buckets: Mapping[str, type[VendorError]] = BUCKETS

    def __init__(
        self,
        http: httpx.Client,
        *,
        secret_id: str,
        secret_key: str,
        region: str = "ap-guangzhou",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = TencentCloudApi(
            http,
            vendor=self.name,
            service=self.service,
            version=self.version,
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            clock=clock,
            buckets=self.buckets,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._api!r})"


def require_str(vendor: str, fields: Mapping[str, object], name: str) -> str:
    """A non-empty string field of an answer; missing or mistyped is `VendorProtocolError`."""
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise VendorProtocolError(vendor, f"missing_{name}", f"{name}={type(value).__name__}")
    return value
