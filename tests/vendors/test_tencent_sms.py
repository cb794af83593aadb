"""SmsClient against SmsSim over httpx.MockTransport and on loopback; time moves by the fake clock.
Raw calls the client never makes go through the API 3.0 core (`TencentCloudApi`)."""

from __future__ import annotations

import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support import wait_for
from tests.vendors.conftest import TENCENT_SECRET_ID, TENCENT_SECRET_KEY
from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.sim.common import asgi_app
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.tencent_sms import SmsSim, beijing_day, register_sms
from vendors.tencent_cloud import TencentCloudApi, bucket_for
from vendors.tencent_sms import MASK, SMS_BUCKETS, SmsClient, SmsRateLimited, normalize_phone

SDK_APP_ID = "1400006666"
SIGN_NAME = "衣拍"
TEMPLATE_ID = "1110000"
PHONE = "+8613800138000"
CODE = "482916"
SMS_HOST = "https://sms.tencentcloudapi.com"


@pytest.fixture
def sms_sim(clock: Any) -> SmsSim:
    return SmsSim(credentials={TENCENT_SECRET_ID: TENCENT_SECRET_KEY}, clock=clock, seed=7, sdk_app_id=SDK_APP_ID)


@pytest.fixture
def sms_http(sms_sim: SmsSim) -> Iterator[httpx.Client]:
    """The real endpoint's URL, answered by the simulator: the signature covers this Host."""
    with httpx.Client(transport=httpx.MockTransport(sms_sim.handle), base_url=SMS_HOST, timeout=5) as client:
        yield client


def make_client(http: httpx.Client, clock: Any, *, secret_key: str = TENCENT_SECRET_KEY) -> SmsClient:
    return SmsClient(
        http, secret_id=TENCENT_SECRET_ID, secret_key=secret_key, sdk_app_id=SDK_APP_ID, sign_name=SIGN_NAME,
        template_id=TEMPLATE_ID, clock=clock,
    )  # fmt: skip


@pytest.fixture
def sms_client(sms_http: httpx.Client, clock: Any) -> SmsClient:
    return make_client(sms_http, clock)


def raw(http: httpx.Client, clock: Any) -> TencentCloudApi:
    """The API 3.0 core signed for sms: for fields the client would never send."""
    return TencentCloudApi(
        http, vendor="tencent_sms", service="sms", version="2021-01-11", secret_id=TENCENT_SECRET_ID,
        secret_key=TENCENT_SECRET_KEY, region="ap-guangzhou", clock=clock, buckets=SMS_BUCKETS,
    )  # fmt: skip


def send_sms(**changes: object) -> dict[str, object]:
    """A valid SendSms body with `changes` applied; a None value drops the field."""
    body: dict[str, object] = {
        "PhoneNumberSet": [PHONE], "SmsSdkAppId": SDK_APP_ID, "TemplateId": TEMPLATE_ID, "SignName": SIGN_NAME,
        "TemplateParamSet": [CODE, "5"],
    }  # fmt: skip
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def statuses(fields: dict[str, object]) -> list[str]:
    entries = fields["SendStatusSet"]
    assert isinstance(entries, list)
    return [entry["Code"] for entry in entries]


# --- the happy path ---------------------------------------------------------------------------------


def test_sent_code_is_in_the_sims_inbox_under_the_e164_number(sms_sim, clock, sms_http, sms_client) -> None:
    sms_client.send_code("13800138000", CODE, ttl_minutes=5)

    inbox = sms_http.get("/__sim/sms", params={"phone": PHONE})

    assert inbox.status_code == 200
    assert inbox.json() == [
        {"phone": PHONE, "code": CODE, "template_params": [CODE, "5"], "sent_at": clock.now, "status": "Ok"}
    ]
    assert sms_sim.last_code(PHONE) == CODE


def test_fields_reach_the_sim_as_documented_and_the_call_log_masks_the_code(sms_sim, sms_http, sms_client) -> None:
    sms_client.send_code(PHONE, CODE, ttl_minutes=10)

    body = sms_sim.calls[-1].body
    logged = sms_http.get("/__sim/calls").text

    assert body["Action"] == "SendSms"
    assert (body["PhoneNumberSet"], body["SmsSdkAppId"]) == ([PHONE], SDK_APP_ID)
    assert (body["TemplateId"], body["SignName"]) == (TEMPLATE_ID, SIGN_NAME)
    assert body["TemplateParamSet"] == [MASK, "10"]
    assert CODE not in logged and SIGN_NAME in logged


def test_a_malformed_template_param_set_is_masked_whole_in_the_call_log(sms_sim, clock, sms_http) -> None:
    with pytest.raises(VendorRejected):
        raw(sms_http, clock).call("SendSms", send_sms(TemplateParamSet=CODE))

    assert sms_sim.calls[-1].body["TemplateParamSet"] == MASK
    assert CODE not in sms_http.get("/__sim/calls").text


def test_the_sim_answers_a_status_per_number(clock, sms_http) -> None:
    fields = raw(sms_http, clock).call("SendSms", send_sms(PhoneNumberSet=[PHONE, "+86123456", "+86abc"]))

    entries = fields["SendStatusSet"]
    assert statuses(fields) == ["Ok", "InvalidParameterValue.IncorrectPhoneNumber",
                                "FailedOperation.PhoneNumberParseFail"]  # fmt: skip
    assert isinstance(entries, list)
    assert entries[0]["SerialNo"] and (entries[0]["Fee"], entries[0]["IsoCode"]) == (1, "CN")
    assert (entries[1]["SerialNo"], entries[1]["Fee"]) == ("", 0)


def test_international_numbers_need_no_sign_name_and_empty_code_is_within_0_to_6_digits(sms_sim, clock, sms_http):
    fields = raw(sms_http, clock).call(
        "SendSms", send_sms(PhoneNumberSet=["+14155550100"], SignName=None, TemplateParamSet=["", "5"])
    )

    assert statuses(fields) == ["Ok"]
    assert sms_sim.last_code("+14155550100") == ""


# --- signature --------------------------------------------------------------------------------------


def test_wrong_secret_key_is_signature_failure(sms_sim, clock, sms_http) -> None:
    client = make_client(sms_http, clock, secret_key=TENCENT_SECRET_KEY[::-1])

    with pytest.raises(VendorRejected) as info:
        client.send_code(PHONE, CODE, ttl_minutes=5)

    assert info.value.code == "tencent_AuthFailure.SignatureFailure"
    assert sms_sim.messages(PHONE) == []


# --- phone numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone", ["13800138000", "8613800138000", "008613800138000", "+8613800138000", "+86 138-0013-8000"]
)
def test_mainland_numbers_are_sent_in_e164(sms_sim, sms_client, phone) -> None:
    sms_client.send_code(phone, CODE, ttl_minutes=5)

    assert sms_sim.calls[-1].body["PhoneNumberSet"] == [PHONE]
    assert sms_sim.last_code(PHONE) == CODE


@pytest.mark.parametrize(
    ("phone", "expected"),
    [("13800138000", PHONE), ("0086 13800138000", PHONE), ("+14155550100", "+14155550100"),
     ("+44 (20) 7946-0958", "+442079460958"), ("abc", None), ("12345", None), ("", None), ("+0123456", None),
     ("23800138000", None)],
)  # fmt: skip
def test_normalize_phone(phone, expected) -> None:
    assert normalize_phone(phone) == expected


@pytest.mark.parametrize("phone", ["abc", "12345", "", "138 0013 800"])
def test_a_number_that_is_no_phone_is_rejected_locally(sms_sim, sms_client, phone) -> None:
    with pytest.raises(VendorRejected) as info:
        sms_client.send_code(phone, CODE, ttl_minutes=5)

    assert info.value.code == "invalid_phone"
    assert sms_sim.calls == []


def test_a_malformed_mainland_number_is_rejected_by_the_sim(sms_sim, sms_client) -> None:
    with pytest.raises(VendorRejected) as info:
        sms_client.send_code("+86123456", CODE, ttl_minutes=5)

    assert type(info.value) is VendorRejected
    assert info.value.code == "tencent_InvalidParameterValue.IncorrectPhoneNumber"
    assert sms_sim.messages("+86123456")[0]["status"] == "InvalidParameterValue.IncorrectPhoneNumber"


@pytest.mark.parametrize(("code", "ttl"), [("12345", 0), ("123", 5), ("1234567", 5), ("12a4", 5), ("١٢٣٤", 5)])
def test_code_and_ttl_are_checked_locally(sms_sim, sms_client, code, ttl) -> None:
    with pytest.raises(VendorRejected) as info:
        sms_client.send_code(PHONE, code, ttl_minutes=ttl)

    assert info.value.code == "invalid_request"
    assert sms_sim.calls == []


# --- per-number limits ------------------------------------------------------------------------------


def test_second_send_within_30_s_is_rate_limited_and_goes_after_31_s(sms_sim, clock, sms_client) -> None:
    sms_client.send_code(PHONE, "111111", ttl_minutes=5)
    clock.advance(29)

    with pytest.raises(SmsRateLimited) as info:
        sms_client.send_code(PHONE, "222222", ttl_minutes=5)
    clock.advance(2)
    sms_client.send_code(PHONE, "333333", ttl_minutes=5)

    assert isinstance(info.value, VendorRejected)
    assert info.value.code == "tencent_LimitExceeded.PhoneNumberThirtySecondLimit"
    assert info.value.retry_after_s == 30
    assert sms_sim.last_code(PHONE) == "333333"
    assert [m["status"] for m in sms_sim.messages(PHONE)] == [
        "Ok", "LimitExceeded.PhoneNumberThirtySecondLimit", "Ok",
    ]  # fmt: skip


def test_limits_are_per_number(sms_client) -> None:
    sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    sms_client.send_code("13900139000", CODE, ttl_minutes=5)


def send_spaced(client: SmsClient, clock: Any, count: int) -> None:
    """`count` codes to PHONE, 31 s apart (past the 30 s limit each time)."""
    for i in range(count):
        client.send_code(PHONE, f"{100000 + i}", ttl_minutes=5)
        clock.advance(31)


def test_sixth_send_within_an_hour_is_rate_limited(sms_sim, clock, sms_client) -> None:
    first_sent = clock.now
    send_spaced(sms_client, clock, 5)

    with pytest.raises(SmsRateLimited) as info:
        sms_client.send_code(PHONE, CODE, ttl_minutes=5)
    clock.now = first_sent + 3600
    sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    assert info.value.code == "tencent_LimitExceeded.PhoneNumberOneHourLimit"
    assert info.value.retry_after_s == 3600
    assert sms_sim.last_code(PHONE) == CODE


def test_eleventh_send_of_the_day_is_rate_limited_until_the_next_beijing_day(sms_sim, clock, sms_client) -> None:
    start = clock.now
    send_spaced(sms_client, clock, 5)
    clock.advance(3600)
    send_spaced(sms_client, clock, 5)
    clock.advance(3600)
    assert beijing_day(clock.now) == beijing_day(start)

    with pytest.raises(SmsRateLimited) as info:
        sms_client.send_code(PHONE, CODE, ttl_minutes=5)
    clock.advance(8 * 3600)
    sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    assert info.value.code == "tencent_LimitExceeded.PhoneNumberDailyLimit"
    assert beijing_day(clock.now) == beijing_day(start) + 1
    assert sms_sim.stats()["delivered"] == 11


def test_limits_follow_the_knobs(sms_sim, clock, sms_client) -> None:
    sms_sim.configure(per_30s=2)
    sms_client.send_code(PHONE, "111111", ttl_minutes=5)

    sms_client.send_code(PHONE, "222222", ttl_minutes=5)

    assert sms_sim.last_code(PHONE) == "222222"


def test_balance_runs_out(sms_sim, clock, sms_client) -> None:
    sms_sim.configure(balance=1)
    sms_client.send_code(PHONE, CODE, ttl_minutes=5)
    clock.advance(31)

    with pytest.raises(VendorRejected) as info:
        sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    assert info.value.code == "tencent_FailedOperation.InsufficientBalanceInSmsPackage"
    assert sms_sim.knobs.balance == 0


# --- classification ---------------------------------------------------------------------------------

SIM_CLASSIFICATION = [
    pytest.param({"failure_rate": 1.0, "failure_kind": "InternalError"}, VendorUnavailable, "tencent_InternalError",
                 id="InternalError"),
    pytest.param({"failure_rate": {"SendSms": 1.0}, "failure_kind": "RequestLimitExceeded"}, VendorUnavailable,
                 "tencent_RequestLimitExceeded", id="qps"),
    pytest.param({"failure_rate": 1.0, "failure_kind": "transport"}, VendorUnavailable, "transport", id="transport"),
    pytest.param({"clock_offset_s": 400}, VendorUnavailable, "tencent_AuthFailure.SignatureExpire", id="skew"),
    pytest.param({"blacklist": ["13800138000"]}, VendorRejected, "tencent_FailedOperation.PhoneNumberInBlacklist",
                 id="blacklist"),
    pytest.param({"balance": 0}, VendorRejected, "tencent_FailedOperation.InsufficientBalanceInSmsPackage",
                 id="balance"),
    pytest.param({"template_id": "999999"}, VendorRejected, "tencent_FailedOperation.TemplateIncorrectOrUnapproved",
                 id="template"),
    pytest.param({"sign_name": "别的签名"}, VendorRejected, "tencent_FailedOperation.SignatureIncorrectOrUnapproved",
                 id="sign-name"),
    pytest.param({"per_30s": 0}, SmsRateLimited, "tencent_LimitExceeded.PhoneNumberThirtySecondLimit", id="30s"),
]  # fmt: skip


@pytest.mark.parametrize(("knobs", "bucket", "code"), SIM_CLASSIFICATION)
def test_classification_through_the_sim(sms_sim, sms_client, knobs, bucket, code) -> None:
    sms_sim.configure(**knobs)

    with pytest.raises(VendorError) as info:
        sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    assert type(info.value) is bucket
    assert info.value.code == code


@pytest.mark.parametrize(
    ("code", "bucket"),
    [
        ("LimitExceeded.PhoneNumberThirtySecondLimit", SmsRateLimited),
        ("LimitExceeded.PhoneNumberOneHourLimit", SmsRateLimited),
        ("LimitExceeded.PhoneNumberDailyLimit", SmsRateLimited),
        ("LimitExceeded.PhoneNumberSameContentDailyLimit", SmsRateLimited),
        ("LimitExceeded.DeliveryFrequencyLimit", SmsRateLimited),
        ("LimitExceeded.AppDailyLimit", SmsRateLimited),
        ("LimitExceeded.PhoneNumberCountLimit", VendorRejected),
        ("LimitExceeded.AppCountryOrRegionInBlacklist", VendorRejected),
        ("LimitExceeded", VendorRejected),
        ("InternalError", VendorUnavailable),
        ("InternalError.Timeout", VendorUnavailable),
        ("RequestLimitExceeded", VendorUnavailable),
        ("RequestLimitExceeded.UinLimitExceeded", VendorUnavailable),
        ("AuthFailure.SignatureExpire", VendorUnavailable),
        ("AuthFailure.SecretIdNotFound", VendorRejected),
        ("FailedOperation.InsufficientBalanceInSmsPackage", VendorRejected),
        ("FailedOperation.PhoneNumberInBlacklist", VendorRejected),
        ("FailedOperation.TemplateParamSetNotMatchApprovedTemplate", VendorRejected),
        ("InvalidParameterValue.IncorrectPhoneNumber", VendorRejected),
        ("InvalidParameterValue.TemplateParameterFormatError", VendorRejected),
        ("SomethingNew", VendorRejected),
    ],
)
def test_bucket_table(code, bucket) -> None:
    assert bucket_for(code, SMS_BUCKETS) is bucket


SIM_RULES = [
    ({"SmsSdkAppId": "1400000000"}, "InvalidParameterValue.SdkAppIdNotExist"),
    ({"SmsSdkAppId": None}, "MissingParameter"),
    ({"TemplateId": None}, "MissingParameter"),
    ({"SignName": None}, "FailedOperation.SignatureIncorrectOrUnapproved"),
    ({"TemplateParamSet": [CODE]}, "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"),
    ({"TemplateParamSet": None}, "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"),
    ({"TemplateParamSet": ["48291a", "5"]}, "InvalidParameterValue.TemplateParameterFormatError"),
    ({"TemplateParamSet": ["4829160", "5"]}, "InvalidParameterValue.TemplateParameterFormatError"),
    ({"TemplateParamSet": [CODE, "1234567"]}, "InvalidParameterValue.TemplateParameterLengthLimit"),
    ({"TemplateParamSet": [CODE, 5]}, "InvalidParameter"),
    ({"PhoneNumberSet": []}, "MissingParameter.EmptyPhoneNumberSet"),
    ({"PhoneNumberSet": None}, "MissingParameter.EmptyPhoneNumberSet"),
    ({"PhoneNumberSet": [f"+86138{i:08d}" for i in range(201)]}, "LimitExceeded.PhoneNumberCountLimit"),
    ({"PhoneNumberSet": [PHONE, "+14155550100"]}, "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"),
    ({"PhoneNumberSet": PHONE}, "InvalidParameter"),
    ({"Colour": "red"}, "UnknownParameter"),
]


@pytest.mark.parametrize(("changes", "code"), SIM_RULES)
def test_request_rules_answer_call_errors(sms_sim, clock, sms_http, changes, code) -> None:
    with pytest.raises(VendorError) as info:
        raw(sms_http, clock).call("SendSms", send_sms(**changes))

    assert info.value.code == f"tencent_{code}"
    assert sms_sim.messages() == []


# --- contract drift and secrets ---------------------------------------------------------------------


def vendor_answer(fields: dict[str, object]) -> Callable[[httpx.Request], httpx.Response]:
    body = {"Response": {**fields, "RequestId": "5b3d9c2e-0000-4000-8000-000000000000"}}
    return lambda _request: httpx.Response(200, json=body)


def send_through(answer: Callable[[httpx.Request], httpx.Response], clock: Any) -> VendorError:
    transport = httpx.MockTransport(answer)
    with httpx.Client(transport=transport, base_url=SMS_HOST) as http, pytest.raises(VendorError) as info:
        make_client(http, clock).send_code(PHONE, CODE, ttl_minutes=5)
    return info.value


@pytest.mark.parametrize(
    ("fields", "code"),
    [({}, "missing_SendStatusSet"), ({"SendStatusSet": []}, "missing_SendStatusSet"),
     ({"SendStatusSet": [{"PhoneNumber": PHONE, "Code": 5}]}, "bad_SendStatus")],
    ids=["none", "empty", "bad-code"],
)  # fmt: skip
def test_contract_drift_is_a_protocol_error(clock, fields, code) -> None:
    error = send_through(vendor_answer(fields), clock)

    assert isinstance(error, VendorProtocolError)
    assert error.code == code


@pytest.mark.parametrize(
    "fields",
    [{"Error": {"Code": "FailedOperation.ContainSensitiveWord", "Message": f"variable {CODE} is not allowed"}},
     {"SendStatusSet": [{"PhoneNumber": PHONE, "Code": "FailedOperation.ContainSensitiveWord",
                         "Message": f"{CODE} contains a sensitive word"}]}],
    ids=["call-error", "per-number"],
)  # fmt: skip
def test_a_vendor_message_echoing_the_code_is_masked(clock, fields) -> None:
    error = send_through(vendor_answer(fields), clock)

    assert error.code == "tencent_FailedOperation.ContainSensitiveWord"
    assert MASK in error.detail
    assert CODE not in "".join(traceback.format_exception(error)) + repr(error)


def test_secret_key_and_code_never_in_exception_text(sms_sim, clock, sms_http, sms_client) -> None:
    failures: list[VendorError] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except VendorError as exc:
            failures.append(exc)

    def send(phone: str = PHONE, client: SmsClient = sms_client) -> None:
        client.send_code(phone, CODE, ttl_minutes=5)

    for kind in ("transport", "InternalError", "RequestLimitExceeded"):
        sms_sim.configure(failure_rate=1.0, failure_kind=kind)
        collect(send)
    sms_sim.configure(failure_rate=0.0)
    collect(lambda: send(client=make_client(sms_http, clock, secret_key=TENCENT_SECRET_KEY[::-1])))
    send()
    collect(send)  # 30 s limit
    collect(lambda: send("+86123456"))
    collect(lambda: send("not a phone"))
    sms_sim.configure(blacklist=[PHONE], template_id="999999")
    collect(send)

    assert len(failures) == 8
    for exc in failures:
        text = "".join(traceback.format_exception(exc)) + f"{exc!r} {exc.detail} {exc.args}"
        assert TENCENT_SECRET_KEY not in text
        assert CODE not in text
    assert TENCENT_SECRET_KEY not in repr(sms_client)


# --- the admin surface ------------------------------------------------------------------------------


def test_inbox_lists_newest_first_and_last_is_the_last_delivered(sms_sim, clock, sms_http, sms_client) -> None:
    sms_client.send_code(PHONE, "111111", ttl_minutes=5)
    clock.advance(31)
    sms_client.send_code(PHONE, "222222", ttl_minutes=5)
    with pytest.raises(SmsRateLimited):
        sms_client.send_code(PHONE, "333333", ttl_minutes=5)

    inbox = sms_http.get("/__sim/sms", params={"phone": "13800138000"}).json()
    last = sms_http.get("/__sim/sms/last", params={"phone": PHONE})

    assert [(m["code"], m["status"]) for m in inbox] == [
        ("333333", "LimitExceeded.PhoneNumberThirtySecondLimit"), ("222222", "Ok"), ("111111", "Ok"),
    ]  # fmt: skip
    assert last.status_code == 200 and last.json()["code"] == "222222"


def test_an_unencoded_plus_in_the_query_still_finds_the_number(sms_http, sms_client) -> None:
    sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    answer = sms_http.get(f"/__sim/sms/last?phone={PHONE}")

    assert answer.json()["code"] == CODE


def test_last_without_a_delivered_message_is_404_and_without_a_phone_400(sms_http) -> None:
    assert sms_http.get("/__sim/sms/last", params={"phone": PHONE}).status_code == 404
    assert sms_http.get("/__sim/sms/last").status_code == 400
    assert sms_http.get("/__sim/sms", params={"phone": PHONE}).json() == []


def test_config_over_http_sets_the_blacklist_and_rejects_bad_values(sms_sim, sms_http, sms_client) -> None:
    changed = sms_http.post("/__sim/config", json={"blacklist": ["008613800138000"], "latency_ms": 0})
    bad = sms_http.post("/__sim/config", json={"per_30s": -1, "clock_offset_s": 7})
    fractional = sms_http.post("/__sim/config", json={"per_hour": 1.5})
    unknown = sms_http.post("/__sim/config", json={"nope": 1})

    with pytest.raises(VendorRejected) as info:
        sms_client.send_code(PHONE, CODE, ttl_minutes=5)

    assert changed.status_code == 200 and changed.json()["blacklist"] == ["008613800138000"]
    assert (bad.status_code, fractional.status_code, unknown.status_code) == (400, 400, 400)
    assert (sms_sim.knobs.per_30s, sms_sim.core.knobs.clock_offset_s) == (1, 0.0)
    assert info.value.code == "tencent_FailedOperation.PhoneNumberInBlacklist"


def test_reset_forgets_messages_limits_and_calls(sms_sim, sms_http, sms_client) -> None:
    sms_client.send_code(PHONE, "111111", ttl_minutes=5)

    sms_http.post("/__sim/reset")
    sms_client.send_code(PHONE, "222222", ttl_minutes=5)

    assert [m["code"] for m in sms_sim.messages(PHONE)] == ["222222"]
    assert len(sms_http.get("/__sim/calls").json()) == 1


def test_stats_count_messages_by_status(sms_sim, clock, sms_http, sms_client) -> None:
    sms_client.send_code(PHONE, CODE, ttl_minutes=5)
    with pytest.raises(SmsRateLimited):
        sms_client.send_code(PHONE, CODE, ttl_minutes=5)
    sms_client.send_code("13900139000", CODE, ttl_minutes=5)

    stats = sms_http.get("/__sim/stats").json()

    assert stats == {"messages": 3, "delivered": 2, "phones": 2,
                     "statuses": {"Ok": 2, "LimitExceeded.PhoneNumberThirtySecondLimit": 1}}  # fmt: skip


# --- a shared core ----------------------------------------------------------------------------------


def test_register_sms_on_another_simulators_core(clock, h3d_sim: Hunyuan3DSim, h3d_http: httpx.Client) -> None:
    sms = register_sms(h3d_sim.core, sdk_app_id=SDK_APP_ID)

    make_client(h3d_http, clock).send_code(PHONE, CODE, ttl_minutes=5)

    assert sms.last_code(PHONE) == CODE
    assert sms.core is h3d_sim.core


def test_own_core_or_shared_core_not_both(h3d_sim: Hunyuan3DSim) -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        SmsSim(sdk_app_id=SDK_APP_ID, credentials={TENCENT_SECRET_ID: TENCENT_SECRET_KEY}, core=h3d_sim.core)


# --- loopback ---------------------------------------------------------------------------------------


@pytest.fixture
def sms_loopback(sms_sim: SmsSim) -> Iterator[str]:
    """`sms_sim` behind uvicorn on a free 127.0.0.1 port, in a thread; stopped at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(sms_sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_code_sent_and_read_back_over_loopback(clock, sms_loopback) -> None:
    """The TC3 signature covers the real `Host: 127.0.0.1:<port>`; the code is read back over HTTP."""
    with httpx.Client(base_url=sms_loopback, timeout=10) as http:
        make_client(http, clock).send_code("13800138000", CODE, ttl_minutes=5)
        last = http.get("/__sim/sms/last", params={"phone": PHONE})

    assert last.status_code == 200
    assert (last.json()["phone"], last.json()["code"], last.json()["status"]) == (PHONE, CODE, "Ok")
