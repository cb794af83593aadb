"""The COS native request signature (VENDORS.md §7.2), as pure functions: sign, presign, verify.

    KeyTime      = "{start};{end}"                       (Unix seconds)
    SignKey      = hex HMAC-SHA1(SecretKey, KeyTime)
    HttpString   = "{method}\\n{path}\\n{params}\\n{headers}\\n"
    StringToSign = "sha1\\n{KeyTime}\\n{hex SHA1(HttpString)}\\n"
    Signature    = hex HMAC-SHA1(SignKey, StringToSign)

`params` / `headers` are `k=v` joined by `&`, sorted, with names URL-encoded then lower-cased and
values URL-encoded (everything but RFC 3986 unreserved characters, upper-case hex), as
`cos-python-sdk-v5` `qcloud_cos/cos_auth.py` and `cos-go-sdk-v5` `auth.go` do. The path is the
decoded request path. The SecretKey only ever enters an HMAC: no output of this module contains it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final
from urllib.parse import quote

import httpx

ALGORITHM: Final = "sha1"
CLOCK_SKEW_S: Final = 60
"""A presigned URL is valid from this many seconds before `now`, as cos-python-sdk-v5 does."""

FIELDS: Final = (
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
)
"""The Authorization fields, in the order COS SDKs write them (also the presigned URL's params)."""

_WINDOW = re.compile(r"(\d{1,12});(\d{1,12})")


class Verdict(StrEnum):
    """What `verify` found; only `OK` may proceed."""

    OK = "ok"
    MISSING = "missing"  # no Authorization header and no q-* params: anonymous
    MALFORMED = "malformed"  # fields missing, wrong algorithm, unreadable times
    UNKNOWN_KEY = "unknown_key"  # q-ak is not a known SecretId
    NOT_YET_VALID = "not_yet_valid"  # now is before the window
    EXPIRED = "expired"  # now is after the window
    MISMATCH = "mismatch"  # the signature does not cover what was received


def encode(value: str) -> str:
    """COS's URL-encoding: UTF-8, every byte but `A-Za-z0-9-_.~` as upper-case `%XX`."""
    return quote(value, safe="-_.~")


def sign(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    secret_id: str,
    secret_key: str,
    start: int,
    end: int,
) -> str:
    """The `Authorization` value covering `params` and `headers` (pass only those to be signed)."""
    fields = _fields(
        method, path, params, headers, secret_id=secret_id, secret_key=secret_key, key_time=f"{start};{end}"
    )
    return "&".join(f"{name}={value}" for name, value in fields.items())


def presign_url(
    base_url: str,
    path: str,
    params: Mapping[str, str],
    *,
    secret_id: str,
    secret_key: str,
    now: float,
    ttl_s: int,
) -> str:
    """A GET URL carrying its own signature in the query string, valid until `now + ttl_s`.

    Signs every param and the `host` header as httpx will send it (`host[:port]` of `base_url`),
    so the URL works unchanged on the real host and on a loopback simulator.
    """
    origin = httpx.URL(base_url)
    host = origin.netloc.decode("ascii")
    start, end = int(now) - CLOCK_SKEW_S, int(now) + ttl_s
    fields = _fields(
        "get", path, params, {"host": host}, secret_id=secret_id, secret_key=secret_key, key_time=f"{start};{end}"
    )
    query = "&".join(f"{encode(k)}={encode(v)}" for k, v in (*params.items(), *fields.items()))
    return f"{origin.scheme}://{host}{quote(path, safe='/-_.~')}?{query}"


def verify(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    credentials: Mapping[str, str],
    now: float,
) -> Verdict:
    """Check a received request signed in its `Authorization` header or in its query string.

    `params` are the received query params (decoded), `headers` the received headers,
    `credentials` maps SecretId -> SecretKey. Only the params and headers the signature lists are
    covered, as on COS: anything listed but not received is a mismatch.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    auth = _received_fields(lowered.get("authorization", ""), params)
    verdict = _check_fields(auth, credentials, now)
    if verdict is not Verdict.OK:
        return verdict
    return _check_signature(method, path, params, lowered, auth, credentials[auth["q-ak"]])


# --- the algorithm --------------------------------------------------------------------------------


def _fields(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    secret_id: str,
    secret_key: str,
    key_time: str,
) -> dict[str, str]:
    signed_params = _encoded(params.items())
    signed_headers = _encoded(headers.items())
    signature = _signature(method, path, signed_params, signed_headers, secret_key=secret_key, key_time=key_time)
    return {
        "q-sign-algorithm": ALGORITHM,
        "q-ak": secret_id,
        "q-sign-time": key_time,
        "q-key-time": key_time,
        "q-header-list": ";".join(name for name, _ in signed_headers),
        "q-url-param-list": ";".join(name for name, _ in signed_params),
        "q-signature": signature,
    }


def _encoded(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Sorted (encoded lower-cased name, encoded value) pairs."""
    return sorted((encode(name).lower(), encode(value)) for name, value in pairs)


def _signature(
    method: str,
    path: str,
    params: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    *,
    secret_key: str,
    key_time: str,
) -> str:
    joined = ["&".join(f"{name}={value}" for name, value in pairs) for pairs in (params, headers)]
    http_string = f"{method.lower()}\n{path}\n{joined[0]}\n{joined[1]}\n"
    digest = hashlib.sha1(http_string.encode()).hexdigest()  # noqa: S324 - COS mandates SHA-1
    string_to_sign = f"{ALGORITHM}\n{key_time}\n{digest}\n"
    sign_key = _hmac_sha1(secret_key, key_time)
    return _hmac_sha1(sign_key, string_to_sign)


def _hmac_sha1(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha1).hexdigest()


# --- verification helpers -------------------------------------------------------------------------


def _received_fields(authorization: str, params: Mapping[str, str]) -> dict[str, str]:
    """The signature fields from the Authorization header, else from the query string."""
    if authorization:
        pairs = (part.partition("=") for part in authorization.strip().split("&"))
        return {name: value for name, _, value in pairs if name in FIELDS}
    return {name: params[name] for name in FIELDS if name in params}


def _check_fields(auth: Mapping[str, str], credentials: Mapping[str, str], now: float) -> Verdict:
    """Everything but the signature itself: presence, algorithm, SecretId, validity window."""
    if not auth:
        return Verdict.MISSING
    windows = [_WINDOW.fullmatch(auth.get(name, "")) for name in ("q-sign-time", "q-key-time")]
    if set(auth) != set(FIELDS) or auth["q-sign-algorithm"] != ALGORITHM or not all(windows):
        return Verdict.MALFORMED
    if auth["q-ak"] not in credentials:
        return Verdict.UNKNOWN_KEY
    bounds = [(int(w.group(1)), int(w.group(2))) for w in windows if w]
    if any(now < start for start, _ in bounds):
        return Verdict.NOT_YET_VALID
    return Verdict.EXPIRED if any(now > end for _, end in bounds) else Verdict.OK


def _check_signature(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    auth: Mapping[str, str],
    secret_key: str,
) -> Verdict:
    """Rebuild the listed params and headers from what was received and compare signatures."""
    received_params = {name: value for name, value in _encoded(params.items()) if name not in FIELDS}
    received_headers = dict(_encoded(headers.items()))
    covered: list[list[tuple[str, str]]] = []
    for listed, received in (
        (auth["q-url-param-list"], received_params),
        (auth["q-header-list"], received_headers),
    ):
        names = [name for name in listed.split(";") if name]
        if any(name not in received for name in names):
            return Verdict.MISMATCH
        covered.append(sorted((name, received[name]) for name in names))
    expected = _signature(method, path, covered[0], covered[1], secret_key=secret_key, key_time=auth["q-key-time"])
    return Verdict.OK if hmac.compare_digest(expected, auth["q-signature"].lower()) else Verdict.MISMATCH
