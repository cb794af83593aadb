"""The TC3-HMAC-SHA256 signer and the API 3.0 call core, against the core simulator.

The core is exercised through a tiny `cvm`-like product registered on `TencentCloudSim`: an echo
action, and a fixed-answer action that raises whatever error code it is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping

import httpx
import pytest

from vendors.base import (
    VendorBusy,
    VendorError,
    VendorExpired,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
)
from vendors.sim.tencent_cloud import ActionCall, TencentCloudError, TencentCloudSim
from vendors.tencent_cloud import (
    BUCKETS,
    TencentCloudApi,
    bucket_for,
    canonical_request,
    parse_authorization,
    sha256_hex,
    sign_tc3,
    string_to_sign,
)

SECRET_ID = "AKIDcoreA1b2C3d4E5f6G7h8I9j0K1l2M3n4"
SECRET_KEY = "coreSK9s8R7q6P5o4N3m2L1k0J9i8H7g6F5"
HOST = "cvm.tencentcloudapi.com"

# The example of Tencent Cloud's "签名方法 v3" / "Signature v3" page (DescribeInstances on cvm).
DOC_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
DOC_TIMESTAMP = 1551113065
DOC_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Host": HOST}


# --- the signer: Tencent's published examples ---------------------------------------------------------


def test_signer_reproduces_the_published_example() -> None:
    """Tencent Cloud API 3.0 "签名方法 v3" (https://cloud.tencent.com/document/api/213/30654, the same
    page is copied per product, e.g. /document/api/362/4208): SecretId `AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******`,
    SecretKey `Gu5t9xGARNpq86cd98joQYCN3*******` (the asterisks are literal), `SignedHeaders=content-type;host`.

    The expected Authorization is the page's published value as quoted verbatim by public test suites
    that pin it (e.g. Go `TestSign` in a tencentcloud client package, Dart and C# "published signature"
    tests); the stored page excerpt available offline was cut before the value itself.
    """
    authorization = sign_tc3(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        headers=DOC_HEADERS,
        payload=DOC_PAYLOAD,
    )

    assert authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


def test_signer_reproduces_every_step_of_the_international_page() -> None:
    """tencentcloud.com "Signature v3" (English edition of the same page, read in full): SecretKey
    `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`; it publishes the payload hash, the canonical request, its hash,
    the string to sign and `Signature=72e494ea...`."""
    canonical = canonical_request(method="POST", query="", headers=DOC_HEADERS, payload=DOC_PAYLOAD)
    to_sign = string_to_sign(timestamp=DOC_TIMESTAMP, service="cvm", canonical=canonical)
    authorization = sign_tc3(
        secret_id="AKIDEXAMPLE",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        headers=DOC_HEADERS,
        payload=DOC_PAYLOAD,
    )

    assert sha256_hex(DOC_PAYLOAD) == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    assert canonical == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n"
        "content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert to_sign == (
        "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    assert authorization.endswith("Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168")


def test_signer_covers_extra_signed_headers_as_the_current_page_does() -> None:
    """The page's later revision also signs `x-tc-action` (value lower-cased), published as
    `SignedHeaders=content-type;host;x-tc-action, Signature=be4f67d3...` for the masked key above
    (as quoted by public clients that pin it; TencentCloud/signature-process-demo signature-v3 demos
    build the same canonical headers)."""
    authorization = sign_tc3(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        headers={**DOC_HEADERS, "X-TC-Action": "DescribeInstances"},
        payload=DOC_PAYLOAD,
    )

    assert authorization.endswith(
        "SignedHeaders=content-type;host;x-tc-action, "
        "Signature=be4f67d323c78ab9acb7395e43c0dbcf822a9cfac32fea2449a7bc7726b770a3"
    )


def test_scope_date_is_the_utc_day_not_the_local_one() -> None:
    """1551113065 is 2019-02-26 00:44:25 in Beijing but still 2019-02-25 in UTC."""
    authorization = sign_tc3(
        secret_id="id", secret_key="key", service="ai3d", timestamp=DOC_TIMESTAMP, headers=DOC_HEADERS, payload=b"{}"
    )

    assert "Credential=id/2019-02-25/ai3d/tc3_request," in authorization


def test_parse_authorization_reads_back_what_was_signed() -> None:
    authorization = sign_tc3(
        secret_id=SECRET_ID, secret_key=SECRET_KEY, service="ai3d", timestamp=DOC_TIMESTAMP, headers=DOC_HEADERS,
        payload=b"{}",
    )  # fmt: skip

    parsed = parse_authorization(authorization)

    assert parsed is not None
    assert (parsed.secret_id, parsed.date, parsed.service, parsed.signed_headers) == (
        SECRET_ID, "2019-02-25", "ai3d", ("content-type", "host"),
    )  # fmt: skip
    assert parse_authorization("Bearer abc") is None


# --- the classification table -------------------------------------------------------------------------

CODES = [
    ("RequestLimitExceeded.JobNumExceed", VendorBusy),
    ("LimitExceeded", VendorBusy),
    ("RequestLimitExceeded", VendorBusy),  # a rate limit is back-pressure (SPEC §6)
    ("RequestLimitExceeded.UinLimitExceeded", VendorBusy),
    ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", VendorBusy),
    ("InternalError", VendorUnavailable),
    ("InternalError.DbError", VendorUnavailable),
    ("ServiceUnavailable", VendorUnavailable),
    ("FailedOperation.EngineRequestTimeout", VendorUnavailable),
    ("FailedOperation.EngineServerError", VendorUnavailable),
    ("FailedOperation.EngineServerLimitExceeded", VendorUnavailable),
    ("AuthFailure.SignatureExpire", VendorUnavailable),
    ("AuthFailure.SignatureFailure", VendorRejected),
    ("AuthFailure.SecretIdNotFound", VendorRejected),
    ("AuthFailure.UnauthorizedOperation", VendorRejected),
    ("UnauthorizedOperation", VendorRejected),
    ("InvalidParameter", VendorRejected),
    ("InvalidParameterValue", VendorRejected),
    ("InvalidParameterValue.ImageSizeExceed", VendorRejected),
    ("MissingParameter", VendorRejected),
    ("UnknownParameter", VendorRejected),
    ("OperationDenied.ImageIllegalDetected", VendorRejected),
    ("OperationDenied.TextIllegalDetected", VendorRejected),
    ("ResourceUnavailable.InArrears", VendorRejected),
    ("ResourceUnavailable.LowBalance", VendorRejected),
    ("ResourceInsufficient", VendorRejected),
    ("ResourceInsufficient.ChargeResourceExhaust", VendorRejected),
    ("FailedOperation", VendorRejected),
    ("FailedOperation.ServiceNotActivated", VendorRejected),
    ("FailedOperation.ServiceStopArrears", VendorRejected),
    ("FailedOperation.ResourcePackExhausted", VendorRejected),
    ("ResourceNotFound", VendorRejected),  # expired only where a call says so (see below)
    ("InvalidAction", VendorRejected),
    ("SomethingNobodyDocumented", VendorRejected),
]


@pytest.mark.parametrize(("code", "bucket"), CODES, ids=[code for code, _ in CODES])
def test_bucket_table(code: str, bucket: type[VendorError]) -> None:
    assert bucket_for(code, BUCKETS) is bucket


# --- the call core against the core simulator ---------------------------------------------------------


def fixed_answer(call: ActionCall) -> Mapping[str, object]:
    """Echo the params, or answer the error code asked for in `Fail`."""
    code = call.params.get("Fail")
    if isinstance(code, str):
        raise TencentCloudError(code, f"fixed answer {code}")
    return {"Echo": dict(call.params), "Region": call.region}


@pytest.fixture
def core(clock) -> TencentCloudSim:
    sim = TencentCloudSim(credentials={SECRET_ID: SECRET_KEY}, clock=clock, seed=3)
    sim.register("DescribeThings", fixed_answer, service="cvm", version="2017-03-12")
    return sim


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], clock, *, secret_id: str = SECRET_ID,
    secret_key: str = SECRET_KEY, base_url: str = f"https://{HOST}",
) -> TencentCloudApi:  # fmt: skip
    http = httpx.Client(transport=httpx.MockTransport(handler), base_url=base_url)
    return TencentCloudApi(
        http, vendor="cvm", service="cvm", version="2017-03-12", secret_id=secret_id, secret_key=secret_key,
        region="ap-guangzhou", clock=clock,
    )  # fmt: skip


@pytest.fixture
def api(core, clock) -> Iterator[TencentCloudApi]:
    yield client_for(core.handle, clock)


def test_call_returns_the_action_fields_without_request_id(api) -> None:
    fields = api.call("DescribeThings", {"Limit": 1, "Name": "未命名"})

    assert fields == {"Echo": {"Limit": 1, "Name": "未命名"}, "Region": "ap-guangzhou"}


def test_request_carries_the_documented_headers(core, clock) -> None:
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return core.handle(request)

    client_for(spy, clock).call("DescribeThings", {}, trace_id="job-1")

    headers = seen[0].headers
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == HOST
    assert (headers["X-TC-Action"], headers["X-TC-Version"], headers["X-TC-Region"]) == (
        "DescribeThings", "2017-03-12", "ap-guangzhou",
    )  # fmt: skip
    assert headers["X-TC-Timestamp"] == str(int(clock.now))
    assert headers["X-TC-TraceId"] == "job-1"
    assert headers["Authorization"].startswith(
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2025-10-09/cvm/tc3_request, SignedHeaders=content-type;host, "
    )
    assert seen[0].method == "POST" and seen[0].url.path == "/"


def test_wrong_secret_key_is_signature_failure(core, clock) -> None:
    with pytest.raises(VendorRejected) as info:
        client_for(core.handle, clock, secret_key="not-the-key").call("DescribeThings", {})

    assert info.value.code == "tencent_AuthFailure.SignatureFailure"


def test_unknown_secret_id_is_secret_id_not_found(core, clock) -> None:
    with pytest.raises(VendorRejected) as info:
        client_for(core.handle, clock, secret_id="AKIDnobody").call("DescribeThings", {})

    assert info.value.code == "tencent_AuthFailure.SecretIdNotFound"


@pytest.mark.parametrize("skew", [-360, 360])
def test_client_clock_six_minutes_off_is_signature_expire(core, clock, skew: int) -> None:
    """Signature expiry is transient: the next call is signed with a fresh timestamp."""
    with pytest.raises(VendorUnavailable) as info:
        client_for(core.handle, lambda: clock.now + skew).call("DescribeThings", {})

    assert info.value.code == "tencent_AuthFailure.SignatureExpire"


@pytest.mark.parametrize("offset", [-360, 360])
def test_server_clock_six_minutes_off_is_signature_expire(core, api, offset: int) -> None:
    core.configure(clock_offset_s=offset)

    with pytest.raises(VendorUnavailable) as info:
        api.call("DescribeThings", {})

    assert info.value.code == "tencent_AuthFailure.SignatureExpire"


@pytest.mark.parametrize("skew", [-299, 299])
def test_skew_within_five_minutes_is_accepted(core, clock, skew: int) -> None:
    assert client_for(core.handle, lambda: clock.now + skew).call("DescribeThings", {})["Echo"] == {}


def test_unknown_action_is_invalid_action(api) -> None:
    with pytest.raises(VendorRejected) as info:
        api.call("DescribeNothing", {})

    assert info.value.code == "tencent_InvalidAction"


def tampered(core: TencentCloudSim, **changes: object) -> Callable[[httpx.Request], httpx.Response]:
    """Deliver the signed request with its body or some headers changed on the way."""

    def deliver(request: httpx.Request) -> httpx.Response:
        content = changes.get("content", request.content)
        assert isinstance(content, bytes)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        headers.update({str(k): str(v) for k, v in changes.items() if k != "content"})
        return core.handle(httpx.Request("POST", request.url, headers=headers, content=content))

    return deliver


@pytest.mark.parametrize(
    "changes",
    [
        {"content": b'{"Limit":2}'},
        {"Content-Type": "application/json; charset=utf-8"},
        {"Host": "127.0.0.1:8701"},
    ],
    ids=["body", "content-type", "host"],
)
def test_signature_covers_received_body_content_type_and_host(core, clock, changes) -> None:
    with pytest.raises(VendorRejected) as info:
        client_for(tampered(core, **changes), clock).call("DescribeThings", {"Limit": 1})

    assert info.value.code == "tencent_AuthFailure.SignatureFailure"


def test_signature_from_another_service_scope_is_rejected(core, clock) -> None:
    http = httpx.Client(transport=httpx.MockTransport(core.handle), base_url=f"https://{HOST}")
    api = TencentCloudApi(
        http, vendor="x", service="ai3d", version="2017-03-12", secret_id=SECRET_ID, secret_key=SECRET_KEY,
        region="ap-guangzhou", clock=clock,
    )  # fmt: skip

    with pytest.raises(VendorRejected) as info:
        api.call("DescribeThings", {})

    assert info.value.code == "tencent_AuthFailure.SignatureFailure"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "TC3-HMAC-SHA256 nonsense", "X-TC-Action": "DescribeThings"},
        {"Authorization": "x", "X-TC-Action": "DescribeThings", "X-TC-Timestamp": "1"},
    ],
    ids=["no-auth", "bad-auth", "garbled-auth"],
)
def test_every_answer_is_http_200_with_exactly_application_json(core, headers) -> None:
    answer = core.handle(httpx.Request("POST", f"https://{HOST}/", headers=headers, content=b"{}"))

    body = json.loads(answer.content)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert set(body["Response"]) == {"Error", "RequestId"}
    assert body["Response"]["Error"]["Code"].startswith("AuthFailure.")


def test_success_is_http_200_with_exactly_application_json(core, clock) -> None:
    answers: list[httpx.Response] = []

    def keep(request: httpx.Request) -> httpx.Response:
        answers.append(core.handle(request))
        return answers[-1]

    client_for(keep, clock).call("DescribeThings", {})

    assert answers[0].status_code == 200
    assert answers[0].headers["Content-Type"] == "application/json"
    assert len(json.loads(answers[0].content)["Response"]["RequestId"]) == 36


# --- classification through the simulator and fixed answers ------------------------------------------


@pytest.mark.parametrize(("code", "bucket"), CODES, ids=[code for code, _ in CODES])
def test_error_codes_through_the_simulator_land_in_their_bucket(api, code, bucket) -> None:
    with pytest.raises(VendorError) as info:
        api.call("DescribeThings", {"Fail": code})

    assert type(info.value) is bucket
    assert info.value.code == f"tencent_{code}"
    assert info.value.vendor == "cvm"
    assert f"fixed answer {code} (RequestId " in info.value.detail


def test_a_call_may_declare_codes_that_mean_expired(api) -> None:
    with pytest.raises(VendorExpired) as info:
        api.call("DescribeThings", {"Fail": "ResourceNotFound"}, expired=("ResourceNotFound*",))

    assert info.value.code == "tencent_ResourceNotFound"


@pytest.mark.parametrize(
    ("kind", "bucket", "code"),
    [("InternalError", VendorUnavailable, "tencent_InternalError"),
     ("RequestLimitExceeded", VendorBusy, "tencent_RequestLimitExceeded"),  # a rate limit: back-pressure
     ("transport", VendorUnavailable, "transport")],
)  # fmt: skip
def test_injected_failures_are_transient(core, api, kind, bucket, code) -> None:
    core.configure(failure_rate=1.0, failure_kind=kind)

    with pytest.raises(bucket) as info:
        api.call("DescribeThings", {})

    assert info.value.code == code


def canned(status: int = 200, body: bytes = b"", headers: Mapping[str, str] | None = None):
    return lambda _request: httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("answer", "bucket", "code"),
    [
        (canned(502, b"<html>bad gateway</html>", {"Retry-After": "2"}), VendorUnavailable, "http_502"),
        (canned(404, b"not found"), VendorUnavailable, "http_404"),
        (canned(body=b"<html>oops</html>"), VendorProtocolError, "not_json"),
        (canned(body=b'{"Error": {"Code": "InternalError"}}'), VendorProtocolError, "bad_envelope"),
        (canned(body=b'{"Response": {"Status": "DONE"}}'), VendorProtocolError, "missing_RequestId"),
        (canned(body=b'{"Response": {"Error": {"Message": "?"}, "RequestId": "r"}}'), VendorProtocolError,
         "bad_error"),
        (canned(body=b'{"Response": {"Error": {"Code": 42}, "RequestId": "r"}}'), VendorProtocolError, "bad_error"),
    ],
    ids=["http-502", "http-404", "not-json", "no-response", "no-request-id", "no-code", "numeric-code"],
)  # fmt: skip
def test_answers_outside_the_envelope(clock, answer, bucket, code) -> None:
    with pytest.raises(VendorError) as info:
        client_for(answer, clock).call("DescribeThings", {})

    assert type(info.value) is bucket
    assert info.value.code == code


def test_http_error_carries_the_retry_after_hint(clock) -> None:
    with pytest.raises(VendorUnavailable) as info:
        client_for(canned(503, b"", {"Retry-After": "3"}), clock).call("DescribeThings", {})

    assert info.value.retry_after_ms == 3000


# --- secrets -----------------------------------------------------------------------------------------


def test_secret_key_never_in_exceptions_call_log_or_repr(core, api, clock) -> None:
    echo = json.dumps({"Response": {"Error": {"Code": "InternalError", "Message": f"bad {SECRET_KEY}"},
                                    "RequestId": "r"}}).encode()  # fmt: skip
    leaky = json.dumps({"error": f"key {SECRET_KEY}"}).encode()

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"reset while sending {SECRET_KEY}", request=request)

    failures: list[VendorError] = []
    attempts: list[Callable[[], object]] = [
        lambda: client_for(canned(body=echo), clock).call("DescribeThings", {}),
        lambda: client_for(canned(body=leaky), clock).call("DescribeThings", {}),
        lambda: client_for(reset, clock).call("DescribeThings", {}),
        lambda: client_for(core.handle, clock, secret_key=SECRET_KEY + "x").call("DescribeThings", {}),
        lambda: api.call("DescribeThings", {"Fail": "InvalidParameter"}),
    ]
    for attempt in attempts:
        try:
            attempt()
        except VendorError as exc:
            failures.append(exc)

    assert len(failures) == len(attempts)
    for exc in failures:
        assert SECRET_KEY not in f"{exc} {exc!r} {exc.detail} {exc.args}"
    assert SECRET_KEY not in json.dumps(core.calls_json()) + repr(core.calls) + repr(api)
