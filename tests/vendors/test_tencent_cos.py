"""The COS native signature: a published vector, an independent step-by-step computation, verify."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from vendors.tencent_cos import Verdict, presign_url, sign, verify

SECRET_ID = "AKIDcosTest0a1b2c3d4e5f60718293a4b5c6"
SECRET_KEY = "cosSecretKey1f2e3d4c5b6a79880716a5b4c3"
CREDENTIALS = {SECRET_ID: SECRET_KEY}
BASE_URL = "https://genq-1250000000.cos.ap-guangzhou.myqcloud.com"
HOST = "genq-1250000000.cos.ap-guangzhou.myqcloud.com"
NOW = 1_760_000_000.0
PARAMS = {
    "ci-process": "GoodsMatting",
    "detect-url": "https://in.example.com/a b/衬衫.png?x=1&y=2",
    "center-layout": "1",
}


def received(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """What a server gets for a GET of `url`: decoded path, decoded query params, Host header."""
    request = httpx.Request("GET", url)
    return request.url.path, dict(request.url.params), {"host": request.headers["host"]}


def test_sign_reproduces_the_cos_go_sdk_published_vector() -> None:
    """tencentyun/cos-go-sdk-v5 `auth_test.go` TestNewAuthorization: inputs and expected value as
    published there (its `x-cos-stroage-class` typo included)."""
    headers = {
        "Host": "testbucket-125000000.cos.ap-guangzhou.myqcloud.com",
        "x-cos-content-sha1": "db8ac1c259eb89d4a131b253bacfca5f319d54f2",
        "x-cos-stroage-class": "nearline",
    }

    authorization = sign(
        "PUT",
        "/testfile2",
        {},
        headers,
        secret_id="QmFzZTY0IGlzIGEgZ2VuZXJp",
        secret_key="AKIDZfbOA78asKUYBcXFrJD0a1ICvR98JM",
        start=1480932292,
        end=1481012292,
    )

    assert authorization == (
        "q-sign-algorithm=sha1&q-ak=QmFzZTY0IGlzIGEgZ2VuZXJp&q-sign-time=1480932292;1481012292"
        "&q-key-time=1480932292;1481012292&q-header-list=host;x-cos-content-sha1;x-cos-stroage-class"
        "&q-url-param-list=&q-signature=ce4ac0ecbcdb30538b3fee0a97cc6389694ce53a"
    )


def test_sign_matches_the_documented_steps_computed_here() -> None:
    """Params with upper-case names and characters to encode, computed step by step (VENDORS §7.2)."""
    params = {"Detect-URL": "https://in.example.com/a b/衬衫.png?x=1", "ci-process": "GoodsMatting"}
    key_time = "1760000000;1760000600"
    http_string = (
        "get\n/\n"
        "ci-process=GoodsMatting&detect-url=https%3A%2F%2Fin.example.com%2Fa%20b%2F%E8%A1%AC%E8%A1%AB.png%3Fx%3D1\n"
        f"host={HOST}&x-cos-meta-tag=a%2Bb\n"
    )
    string_to_sign = f"sha1\n{key_time}\n{hashlib.sha1(http_string.encode()).hexdigest()}\n"
    sign_key = hmac.new(SECRET_KEY.encode(), key_time.encode(), hashlib.sha1).hexdigest()
    expected = hmac.new(sign_key.encode(), string_to_sign.encode(), hashlib.sha1).hexdigest()

    authorization = sign(
        "GET",
        "/",
        params,
        {"Host": HOST, "X-Cos-Meta-Tag": "a+b"},
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        start=1760000000,
        end=1760000600,
    )

    assert authorization == (
        f"q-sign-algorithm=sha1&q-ak={SECRET_ID}&q-sign-time={key_time}&q-key-time={key_time}"
        f"&q-header-list=host;x-cos-meta-tag&q-url-param-list=ci-process;detect-url&q-signature={expected}"
    )


def test_presign_url_puts_params_and_signature_in_the_query() -> None:
    url = presign_url(BASE_URL, "/", PARAMS, secret_id=SECRET_ID, secret_key=SECRET_KEY, now=NOW, ttl_s=600)

    path, params, _ = received(url)

    assert url.startswith(f"{BASE_URL}/?ci-process=GoodsMatting&detect-url=https%3A%2F%2Fin.example.com%2Fa%20b")
    assert path == "/"
    assert {k: params[k] for k in PARAMS} == PARAMS
    assert params["q-sign-algorithm"] == "sha1"
    assert params["q-ak"] == SECRET_ID
    assert params["q-sign-time"] == params["q-key-time"] == "1759999940;1760000600"
    assert params["q-header-list"] == "host"
    assert params["q-url-param-list"] == "center-layout;ci-process;detect-url"
    assert len(params["q-signature"]) == 40


def test_presign_url_signature_is_the_documented_one() -> None:
    url = presign_url(BASE_URL, "/", PARAMS, secret_id=SECRET_ID, secret_key=SECRET_KEY, now=NOW, ttl_s=600)
    _, params, headers = received(url)

    again = sign(
        "get", "/", PARAMS, headers, secret_id=SECRET_ID, secret_key=SECRET_KEY, start=1759999940, end=1760000600
    )

    assert again.endswith(f"&q-signature={params['q-signature']}")


def test_presigned_url_verifies() -> None:
    url = presign_url(BASE_URL, "/", PARAMS, secret_id=SECRET_ID, secret_key=SECRET_KEY, now=NOW, ttl_s=600)
    path, params, headers = received(url)

    verdict = verify("GET", path, params, headers, credentials=CREDENTIALS, now=NOW + 30)

    assert verdict is Verdict.OK


def test_authorization_header_verifies() -> None:
    headers = {"Host": HOST, "Content-Type": "image/png"}
    authorization = sign(
        "PUT", "/uploads/u1/a.png", {}, headers, secret_id=SECRET_ID, secret_key=SECRET_KEY, start=1, end=2**31
    )

    verdict = verify(
        "PUT", "/uploads/u1/a.png", {}, {**headers, "Authorization": authorization}, credentials=CREDENTIALS, now=NOW
    )

    assert verdict is Verdict.OK


def _tamper(name: str, value: str) -> Callable[[dict[str, str], dict[str, str]], None]:
    def change(params: dict[str, str], headers: dict[str, str]) -> None:
        (headers if name == "host" else params)[name] = value

    return change


@pytest.mark.parametrize(
    ("change", "now", "expected"),
    [
        (_tamper("q-signature", "0" * 40), NOW, Verdict.MISMATCH),
        (_tamper("detect-url", "https://evil.example.com/x.png"), NOW, Verdict.MISMATCH),
        (_tamper("host", "other-1250000000.cos.ap-guangzhou.myqcloud.com"), NOW, Verdict.MISMATCH),
        (_tamper("q-url-param-list", "ci-process"), NOW, Verdict.MISMATCH),
        (_tamper("q-ak", "AKIDnobody"), NOW, Verdict.UNKNOWN_KEY),
        (_tamper("q-sign-algorithm", "sha256"), NOW, Verdict.MALFORMED),
        (_tamper("q-sign-time", "soon"), NOW, Verdict.MALFORMED),
        (_tamper("unsigned-extra", "1"), NOW, Verdict.OK),
        (lambda params, headers: None, NOW + 601, Verdict.EXPIRED),
        (lambda params, headers: None, NOW - 61, Verdict.NOT_YET_VALID),
    ],
    ids=[
        "signature",
        "signed-param",
        "host",
        "param-list",
        "unknown-id",
        "algorithm",
        "sign-time",
        "unsigned-param-is-not-covered",
        "expired",
        "not-yet-valid",
    ],
)
def test_verify_names_what_is_wrong(change, now, expected) -> None:
    url = presign_url(BASE_URL, "/", PARAMS, secret_id=SECRET_ID, secret_key=SECRET_KEY, now=NOW, ttl_s=600)
    path, params, headers = received(url)
    change(params, headers)

    verdict = verify("GET", path, params, headers, credentials=CREDENTIALS, now=now)

    assert verdict is expected


def test_unsigned_request_is_missing() -> None:
    verdict = verify("GET", "/", {"ci-process": "GoodsMatting"}, {"host": HOST}, credentials=CREDENTIALS, now=NOW)

    assert verdict is Verdict.MISSING


def test_secret_key_never_appears_in_what_is_produced() -> None:
    url = presign_url(BASE_URL, "/", PARAMS, secret_id=SECRET_ID, secret_key=SECRET_KEY, now=NOW, ttl_s=600)
    authorization = sign("GET", "/", PARAMS, {"host": HOST}, secret_id=SECRET_ID, secret_key=SECRET_KEY, start=1, end=2)

    assert SECRET_KEY not in url
    assert SECRET_KEY not in authorization
    assert quote(SECRET_KEY, safe="") not in url
