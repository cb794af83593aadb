"""What the HTTP vendor clients share beneath their protocols (VENDORS.md §10): masking, the
`Retry-After` hint, JSON answers, RSA signatures, and `EnvelopeClient`, the base of the clients whose
answers are `{code, msg, data}` under one API key (KIE, RunningHub).

Nothing here knows a vendor's paths or codes; each client keeps its own classification table.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from vendors.base import (
    PolledOutputs,
    VendorBusy,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
    transport_error,
)

DETAIL_MAX: Final = 300
"""The most characters of vendor text an error carries."""


def mask(secret: str) -> str:
    """A credential as it may be shown: `****` plus its last four characters (none if short)."""
    return "****" + secret[-4:] if len(secret) > 8 else "****"


def retry_after_ms(resp: httpx.Response) -> int | None:
    """The answer's `Retry-After` in milliseconds, when it is a whole number of seconds."""
    value = resp.headers.get("retry-after", "")
    return int(value) * 1000 if value.isdigit() else None


def json_answer(vendor: str, resp: httpx.Response, scrub: Callable[[str], str] = str) -> object:
    """The answer's JSON value; an answer that is not JSON is `VendorProtocolError("not_json")`."""
    try:
        return resp.json()
    except ValueError:
        raise VendorProtocolError(vendor, "not_json", scrub(resp.text)[:120]) from None


def json_object(raw: bytes | str) -> dict[str, object] | None:
    """`raw` as a JSON object, or None when it is not one."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def rsa_verified(key: RSAPublicKey, signature: str, message: bytes) -> bool:
    """Whether base64 `signature` is SHA256withRSA (PKCS#1 v1.5) of `message` under `key`."""
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):  # binascii.Error is a ValueError
        return False
    return True


@dataclass(frozen=True)
class Envelope:
    """A `{code, msg, data}` answer, with the `Retry-After` hint its HTTP answer carried."""

    code: int
    msg: str
    data: object
    retry_after_ms: int | None = None


class EnvelopeClient(PolledOutputs):
    """One API key, `Authorization: Bearer`, and answers `{code, msg, data}` (VENDORS.md §3, §4).

    The base owns construction (the key is required; base_url and timeouts come from the caller's
    `httpx.Client`), the call and its transport bucket, the HTTP-status buckets (429 back-pressure
    and 5xx transient, both with the `Retry-After` hint; another 4xx permanent), the envelope's
    shape, and scrubbing the key from every text. A subclass keeps its paths, codes and wire shapes.
    """

    name: str
    text_fields: tuple[str, ...] = ("msg",)
    """The envelope's text fields: each a string or null."""

    def __init__(self, http: httpx.Client, *, api_key: str) -> None:
        if not api_key:
            raise ValueError(f"{self.name} api_key is empty")
        self._http = http  # base_url and timeouts come from the caller, never defaults
        self._key = api_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key={mask(self._key)!r})"

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        creates: bool = False,
    ) -> Envelope:
        """One call carrying the key; its envelope, whatever the code, or the bucket of a failed exchange.

        `creates`: the call starts a vendor task, so a lost answer is `VendorOutcomeUnknown`.
        """
        auth = {"Authorization": f"Bearer {self._key}", **(headers or {})}
        try:
            resp = self._http.request(method, path, json=json, params=params, headers=auth)
        except httpx.TransportError as exc:  # no answer: never sent, or sent and the answer lost
            raise transport_error(self.name, exc, creates=creates, scrub=self._scrub) from exc
        return self._envelope(resp)

    def _envelope(self, resp: httpx.Response) -> Envelope:
        hint = retry_after_ms(resp)
        if resp.status_code == 429:
            raise VendorBusy(self.name, "http_429", retry_after_ms=hint)
        if resp.status_code >= 500:
            raise VendorUnavailable(self.name, f"http_{resp.status_code}", retry_after_ms=hint)
        if resp.is_error:
            raise VendorRejected(self.name, f"http_{resp.status_code}", self._scrub(resp.text)[:DETAIL_MAX])
        body = json_answer(self.name, resp, self._scrub)
        if not isinstance(body, dict) or not self._is_envelope(body):
            raise VendorProtocolError(self.name, "bad_envelope", self._scrub(str(body))[:120])
        return Envelope(body["code"], self._text(body), body.get("data"), hint)

    def _is_envelope(self, body: Mapping[str, object]) -> bool:
        """`code` an int, each text field a string or null; `data` may be absent on errors."""
        code, texts = body.get("code"), [body.get(name) for name in self.text_fields]
        return (
            isinstance(code, int) and not isinstance(code, bool) and all(t is None or isinstance(t, str) for t in texts)
        )

    def _text(self, body: Mapping[str, object]) -> str:
        """The answer's text: its `msg` as sent."""
        return str(body.get("msg") or "")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, mask(self._key))
