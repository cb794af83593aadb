"""Alipay: notifies from AlipaySim verified (RSA2) and parsed; the sender's retries until exactly
`success`; AlipayClient's page.pay URL, signed precreate (QR) and trade query against the simulator;
and loopback."""

from __future__ import annotations

import base64
import json
import queue
import socket
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from tests.support import wait_for
from vendors.alipay import (
    ACK,
    AlipayClient,
    AlipayTrade,
    NotifyRejected,
    parse_notify,
    verify_notify,
)
from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.sim.alipay import AlipaySim
from vendors.sim.common import asgi_app

APP_ID = "2021000000000001"
GATEWAY = "https://openapi.alipay.com"
NOTIFY_URL = "https://genq.example/v1/payments/alipay/notify"
ORDER = "genq-order-0001"
PRICE = Decimal("99.00")
Received = tuple[str, dict[str, str], bytes]


class Inbox:
    """A `deliver` that keeps every attempt and answers from `script`, then `default` (`success`)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[tuple[int, bytes]] = []
        self.default: tuple[int, bytes] = (200, b"success")

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        self.received.append((url, dict(headers), body))
        return self.script.pop(0) if self.script else self.default

    def form(self, index: int = -1) -> dict[str, str]:
        return dict(parse_qsl(self.received[index][2].decode(), keep_blank_values=True))


@pytest.fixture(scope="module")
def other_key() -> RSAPrivateKey:
    """A key no simulator knows (made per test run, never stored)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def ali_sim(clock, inbox: Inbox) -> AlipaySim:
    return AlipaySim(app_id=APP_ID, clock=clock, seed=7, deliver=inbox)


@pytest.fixture
def ali_http(ali_sim: AlipaySim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(ali_sim.handle), base_url=GATEWAY, timeout=5) as http:
        yield http


def client_for(http: httpx.Client, sim: AlipaySim, clock: Any, **overrides: Any) -> AlipayClient:
    settings: dict[str, Any] = {
        "app_id": APP_ID,
        "private_key": sim.app_private_key,
        "alipay_public_key": sim.alipay_public_key,
        "clock": clock,
        **overrides,
    }
    return AlipayClient(http, **settings)


@pytest.fixture
def ali(ali_http: httpx.Client, ali_sim: AlipaySim, clock) -> AlipayClient:
    return client_for(ali_http, ali_sim, clock)


def open_cashier(http: httpx.Client, client: AlipayClient, out_trade_no: str = ORDER) -> httpx.Response:
    """What the payer's browser does with the URL genq handed it: the simulator records the order."""
    return http.get(client.page_pay(out_trade_no, PRICE, "genq pro membership", NOTIFY_URL))


def paid_notify(sim: AlipaySim, http: httpx.Client, client: AlipayClient, inbox: Inbox) -> dict[str, str]:
    """Open the cashier for ORDER, pay it in the simulator, deliver: the form genq received."""
    open_cashier(http, client)
    sim.pay(ORDER)
    sim.tick()
    return inbox.form()


def parse(sim: AlipaySim, form: Mapping[str, str]) -> AlipayTrade:
    return parse_notify(form, alipay_public_key=sim.alipay_public_key, app_id=APP_ID)


def signed_answer(key: RSAPrivateKey, node_text: str, name: str = "alipay_trade_query_response") -> bytes:
    """A gateway answer signed by the test's own key over `node_text` exactly as written."""
    sign = base64.b64encode(key.sign(node_text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return f'{{\n  "{name}": {node_text},\n  "sign": "{sign}"\n}}'.encode()


# --- notifies ----------------------------------------------------------------------------------------


def test_notify_verifies_and_parses(ali_sim, ali_http, ali, inbox) -> None:
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    trade = parse(ali_sim, form)

    assert inbox.received[0][0] == NOTIFY_URL
    assert inbox.received[0][1]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert (trade.out_trade_no, trade.trade_status, trade.app_id) == (ORDER, "TRADE_SUCCESS", APP_ID)
    assert trade.total_amount == Decimal("99.00") and isinstance(trade.total_amount, Decimal)
    assert len(trade.trade_no) == 28 and trade.trade_no.isdigit()
    assert trade.notify_id == form["notify_id"] and form["sign_type"] == "RSA2"
    assert [d.acknowledged for d in ali_sim.deliveries] == [True]


@pytest.mark.parametrize(
    ("field", "value"),
    [("total_amount", "0.01"), ("trade_status", "TRADE_FINISHED"), ("out_trade_no", "genq-order-0002")],
)
def test_tampered_field_is_bad_signature(ali_sim, ali_http, ali, inbox, field, value) -> None:
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    with pytest.raises(NotifyRejected) as info:
        parse(ali_sim, {**form, field: value})

    assert info.value.reason == "bad_signature"


def test_wrong_key_is_bad_signature(ali_sim, ali_http, ali, inbox, other_key) -> None:
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    with pytest.raises(NotifyRejected) as info:
        verify_notify(form, alipay_public_key=other_key.public_key())

    assert info.value.reason == "bad_signature"


def test_tamper_signature_knob_is_bad_signature(ali_sim, ali_http, ali, inbox) -> None:
    ali_sim.configure(tamper_signature=True)
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    with pytest.raises(NotifyRejected) as info:
        parse(ali_sim, form)

    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"sign_type": "RSA"}, "unsupported_sign_type"), ({"sign": ""}, "malformed"), ({"sign": "%%%"}, "bad_signature")],
)
def test_sign_fields_are_checked(ali_sim, ali_http, ali, inbox, change, reason) -> None:
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    with pytest.raises(NotifyRejected) as info:
        parse(ali_sim, {**form, **change})

    assert info.value.reason == reason


def test_wrong_app_is_rejected(ali_sim, ali_http, ali, inbox) -> None:
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    with pytest.raises(NotifyRejected) as info:
        parse_notify(form, alipay_public_key=ali_sim.alipay_public_key, app_id="2021000000000002")

    assert info.value.reason == "wrong_app"


def test_hand_signed_notify_with_empty_values_verifies(other_key) -> None:
    """The documented rule, not the simulator's habit: sign/sign_type dropped, empties skipped, sorted."""
    form = {"app_id": APP_ID, "out_trade_no": ORDER, "trade_no": "2025100922001400000000000001",
            "trade_status": "TRADE_FINISHED", "total_amount": "0.01", "body": "", "notify_id": "n1",
            "subject": "会员 & more=1"}  # fmt: skip
    content = "&".join(f"{k}={v}" for k, v in sorted(form.items()) if v)
    sign = base64.b64encode(other_key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()

    trade = parse_notify({**form, "sign": sign, "sign_type": "RSA2"}, alipay_public_key=other_key.public_key(),
                         app_id=APP_ID)  # fmt: skip

    assert (trade.trade_status, trade.total_amount) == ("TRADE_FINISHED", Decimal("0.01"))


def test_ack_is_exactly_success() -> None:
    assert ACK == "success" and len(ACK) == 7


# --- the sender ------------------------------------------------------------------------------------


def test_sender_retries_until_the_body_is_exactly_success(ali_sim, ali_http, ali, inbox, clock) -> None:
    """`success\\n`, `ok` and a 500 saying `success` all count as failures; schedule 0.5, 1, 2 s."""
    inbox.script = [(200, b"success\n"), (200, b"ok"), (500, b"success")]
    start = clock.now
    paid_notify(ali_sim, ali_http, ali, inbox)

    for step in (0.5, 1.0, 2.0, 3600.0):
        clock.advance(step)
        ali_sim.tick()

    assert [(d.at - start, d.answer, d.acknowledged) for d in ali_sim.deliveries] == [
        (0.0, b"success\n", False), (0.5, b"ok", False), (1.5, b"success", False), (3.5, b"success", True),
    ]  # fmt: skip
    assert len({inbox.form(i)["notify_id"] for i in range(4)}) == 1


def test_duplicates_deliver_n_plus_one_identical_notifies(ali_sim, ali_http, ali, inbox) -> None:
    ali_sim.configure(duplicates=1)

    paid_notify(ali_sim, ali_http, ali, inbox)

    assert len(inbox.received) == 2 and inbox.received[0][2] == inbox.received[1][2]
    assert parse(ali_sim, inbox.form(0)) == parse(ali_sim, inbox.form(1))


def test_trade_closed_variant(ali_sim, ali_http, ali, inbox) -> None:
    ali_sim.configure(trade_status="TRADE_CLOSED")

    form = paid_notify(ali_sim, ali_http, ali, inbox)
    queried = ali.query(ORDER)

    assert parse(ali_sim, form).trade_status == "TRADE_CLOSED" and "gmt_close" in form
    assert queried is not None and queried.trade_status == "TRADE_CLOSED"


def test_amount_override_is_an_amount_mismatch(ali_sim, ali_http, ali, inbox) -> None:
    ali_sim.configure(amount_override="0.01")

    form = paid_notify(ali_sim, ali_http, ali, inbox)

    assert parse(ali_sim, form).total_amount == Decimal("0.01") != PRICE


def test_auto_pay_pays_an_opened_order_after_the_delay(ali_sim, ali_http, ali, inbox, clock) -> None:
    ali_sim.configure(auto_pay_after_s=20)
    open_cashier(ali_http, ali)

    clock.advance(19.5)
    before = ali_sim.tick()
    clock.advance(0.5)
    ali_sim.tick()

    assert before == 0 and len(inbox.received) == 1
    assert parse(ali_sim, inbox.form()).trade_status == "TRADE_SUCCESS"


# --- the gateway client ----------------------------------------------------------------------------


def test_page_pay_is_a_signed_gateway_url(ali_sim, ali, ali_http) -> None:
    url = ali.page_pay(ORDER, PRICE, "genq pro membership", NOTIFY_URL)
    params = dict(parse_qsl(urlsplit(url).query))

    page = ali_http.get(url)

    assert url.startswith(f"{GATEWAY}/gateway.do?")
    assert params["method"] == "alipay.trade.page.pay" and params["notify_url"] == NOTIFY_URL
    assert json.loads(params["biz_content"]) == {"out_trade_no": ORDER, "total_amount": "99.00",
                                                 "subject": "genq pro membership",
                                                 "product_code": "FAST_INSTANT_TRADE_PAY"}  # fmt: skip
    assert page.status_code == 200 and ORDER in page.text
    assert ali_sim.stats()["orders"] == 1


def test_a_cashier_url_with_a_changed_amount_is_refused(ali_sim, ali, ali_http) -> None:
    url = ali.page_pay(ORDER, PRICE, "genq pro membership", NOTIFY_URL)

    page = ali_http.get(url.replace("99.00", "00.01"))

    assert page.status_code == 400 and "isv.invalid-signature" in page.text
    assert ali_sim.stats()["orders"] == 0


@pytest.mark.parametrize("amount", ["0", "0.001", "-1", "100000000.01", "NaN", "Infinity"])
@pytest.mark.parametrize("method", ["page_pay", "precreate"])
def test_impossible_amounts_are_refused_before_any_call(ali_sim, ali, method, amount) -> None:
    with pytest.raises(ValueError):
        getattr(ali, method)(ORDER, Decimal(amount), "genq", NOTIFY_URL)

    assert ali_sim.calls == []


def test_query_round_trip_returns_the_paid_state(ali_sim, ali_http, ali, inbox) -> None:
    never_opened = ali.query(ORDER)
    open_cashier(ali_http, ali)
    opened_unpaid = ali.query(ORDER)
    form = paid_notify(ali_sim, ali_http, ali, inbox)

    paid = ali.query(ORDER)

    assert never_opened is None and opened_unpaid is None
    assert paid is not None and paid.trade_status == "TRADE_SUCCESS"
    assert (paid.trade_no, paid.total_amount) == (form["trade_no"], PRICE) and paid.notify_id is None
    call = ali_sim.calls[-1]
    assert (call.path, call.task_id, call.api_key, call.body["method"]) == (
        "/gateway.do", ORDER, APP_ID, "alipay.trade.query",
    )  # fmt: skip


def test_unknown_trade_is_none(ali) -> None:
    assert ali.query("never-made-0001") is None


def test_a_wrong_app_key_is_rejected(ali_http, ali_sim, clock, other_key) -> None:
    client = client_for(ali_http, ali_sim, clock, private_key=other_key)

    with pytest.raises(VendorRejected) as info:
        client.query(ORDER)

    assert info.value.code == "alipay_isv.invalid-signature"


def test_a_configured_app_key_can_be_trusted(clock, other_key) -> None:
    """genq's own app key (public half given to the simulator) works as well as the generated one."""
    sim = AlipaySim(app_id=APP_ID, app_public_keys=[other_key.public_key()], clock=clock)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=GATEWAY) as http:
        client = client_for(http, sim, clock, private_key=other_key)

        assert client.query(ORDER) is None


def test_an_answer_not_signed_by_alipay_is_a_protocol_error(ali_http, ali_sim, clock, other_key) -> None:
    client = client_for(ali_http, ali_sim, clock, alipay_public_key=other_key.public_key())

    with pytest.raises(VendorProtocolError) as info:
        client.query(ORDER)

    assert info.value.code == "bad_response_signature"


def test_the_sign_covers_the_exact_node_text(ali_sim, clock, other_key) -> None:
    """A pretty-printed answer verifies on its own bytes; re-serialising it would not."""
    node = '{ "code": "10000", "msg": "Success", "out_trade_no": "genq-order-0001",\n  "trade_no": "2025100922001400000000000001", "trade_status": "TRADE_SUCCESS", "total_amount": "99.00" }'  # noqa: E501
    answer = signed_answer(other_key, node)
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=answer))
    with httpx.Client(transport=transport, base_url=GATEWAY) as http:
        client = client_for(http, ali_sim, clock, alipay_public_key=other_key.public_key())

        trade = client.query(ORDER)

    assert trade is not None and trade.total_amount == PRICE


def test_an_unsigned_success_is_a_protocol_error(ali_sim, clock) -> None:
    node = {"code": "10000", "msg": "Success", "out_trade_no": ORDER, "trade_no": "1", "trade_status": "TRADE_SUCCESS",
            "total_amount": "99.00"}  # fmt: skip
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"alipay_trade_query_response": node}))
    with httpx.Client(transport=transport, base_url=GATEWAY) as http, pytest.raises(VendorProtocolError) as info:
        client_for(http, ali_sim, clock).query(ORDER)

    assert info.value.code == "unsigned_response"


@pytest.mark.parametrize(("kind", "code"), [("http_500", "http_500"), ("transport", "transport")])
def test_server_errors_and_transport_failures_are_unavailable(ali_sim, ali, kind, code) -> None:
    ali_sim.configure(failure_rate=1.0, failure_kind=kind)

    with pytest.raises(VendorUnavailable) as info:
        ali.query(ORDER)

    assert info.value.code == code


def test_a_system_error_is_unavailable(ali_sim, clock, other_key) -> None:
    node = '{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}'
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=signed_answer(other_key, node)))
    with httpx.Client(transport=transport, base_url=GATEWAY) as http, pytest.raises(VendorUnavailable) as info:
        client_for(http, ali_sim, clock, alipay_public_key=other_key.public_key()).query(ORDER)

    assert info.value.code == "alipay_isp.unknow-error"


# --- precreate (face-to-face QR): the order exists at Alipay as soon as genq creates it --------------

SUBJECT = "genq pro membership"
PRECREATE_NODE = "alipay_trade_precreate_response"


def precreate(client: AlipayClient, out_trade_no: str = ORDER) -> dict[str, str]:
    return client.precreate(out_trade_no, PRICE, SUBJECT, NOTIFY_URL)


def test_precreate_request_is_signed_rsa2_by_the_app_key(ali_sim, clock) -> None:
    """The request, checked here by the documented rule (only `sign` dropped, sorted, `k=v&`)."""
    sent: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return ali_sim.handle(request)

    with httpx.Client(transport=httpx.MockTransport(recording), base_url=GATEWAY) as http:
        answer = precreate(client_for(http, ali_sim, clock))

    params = dict(parse_qsl(sent[0].content.decode(), keep_blank_values=True))
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v).encode()
    ali_sim.app_private_key.public_key().verify(
        base64.b64decode(params["sign"]), content, padding.PKCS1v15(), hashes.SHA256()
    )
    assert (sent[0].method, sent[0].url.path) == ("POST", "/gateway.do")
    assert (params["method"], params["sign_type"], params["notify_url"]) == (
        "alipay.trade.precreate", "RSA2", NOTIFY_URL,
    )  # fmt: skip
    assert json.loads(params["biz_content"]) == {"out_trade_no": ORDER, "total_amount": "99.00", "subject": SUBJECT}
    assert answer["out_trade_no"] == ORDER


def test_precreate_round_trip_then_auto_pay(ali_sim, ali, inbox, clock) -> None:
    """The simulator records the order at precreate and auto-pays it `auto_pay_after_s` later. Until
    then `query` is None: the simulator answers ACQ.TRADE_NOT_EXIST (as Alipay does for a QR nobody
    has scanned yet) and has no WAIT_BUYER_PAY state."""
    ali_sim.configure(auto_pay_after_s=5)

    answer = precreate(ali)
    unpaid = ali.query(ORDER)
    clock.advance(4.5)
    early = ali_sim.tick()
    clock.advance(0.5)
    ali_sim.tick()
    trade = parse(ali_sim, inbox.form())
    paid = ali.query(ORDER)

    assert set(answer) == {"qr_code", "out_trade_no"} and answer["out_trade_no"] == ORDER
    assert answer["qr_code"].startswith("https://qr.alipay.com/") and len(answer["qr_code"]) > 25
    assert unpaid is None and early == 0
    assert inbox.received[0][0] == NOTIFY_URL and [d.acknowledged for d in ali_sim.deliveries] == [True]
    assert (trade.out_trade_no, trade.trade_status, trade.total_amount) == (ORDER, "TRADE_SUCCESS", PRICE)
    assert inbox.form()["subject"] == SUBJECT
    assert paid is not None and (paid.trade_status, paid.trade_no, paid.total_amount) == (
        "TRADE_SUCCESS", trade.trade_no, PRICE,
    )  # fmt: skip
    methods = [call.body["method"] for call in ali_sim.calls]
    assert methods == ["alipay.trade.precreate", "alipay.trade.query", "alipay.trade.query"]
    assert ali_sim.stats()["orders"] == 1 and ali_sim.stats()["paid"] == 1


def test_precreate_then_pay_now(ali_sim, ali, inbox) -> None:
    """`pay()` needs nothing but the out_trade_no: amount, subject and notify_url came with precreate."""
    precreate(ali)

    trade_no = ali_sim.pay(ORDER)
    ali_sim.tick()
    queried = ali.query(ORDER)

    assert parse(ali_sim, inbox.form()).trade_no == trade_no
    assert queried is not None and queried.trade_status == "TRADE_SUCCESS" and queried.total_amount == PRICE


def test_precreate_again_answers_the_same_qr_code(ali_sim, ali) -> None:
    first, second = precreate(ali), precreate(ali)
    other = precreate(ali, "genq-order-0002")

    assert first == second and other["qr_code"] != first["qr_code"]
    assert ali_sim.stats()["orders"] == 2


def test_without_auto_pay_a_precreated_order_waits(ali_sim, ali, inbox, clock) -> None:
    precreate(ali)
    clock.advance(3600)

    assert ali_sim.tick() == 0 and inbox.received == [] and ali.query(ORDER) is None


def test_a_tampered_precreate_answer_is_a_protocol_error(ali_sim, clock) -> None:
    """The simulator's signed answer with the QR code swapped on the way: the sign no longer fits."""

    def tampering(request: httpx.Request) -> httpx.Response:
        answer = ali_sim.handle(request)
        return httpx.Response(200, content=answer.content.replace(b"https://qr.alipay.com/", b"https://evil.test/"))

    transport = httpx.MockTransport(tampering)
    with httpx.Client(transport=transport, base_url=GATEWAY) as http, pytest.raises(VendorProtocolError) as info:
        precreate(client_for(http, ali_sim, clock))

    assert info.value.code == "bad_response_signature"


def test_a_precreate_answer_not_signed_by_alipay_is_a_protocol_error(ali_http, ali_sim, clock, other_key) -> None:
    with pytest.raises(VendorProtocolError) as info:
        precreate(client_for(ali_http, ali_sim, clock, alipay_public_key=other_key.public_key()))

    assert info.value.code == "bad_response_signature"


@pytest.mark.parametrize(
    ("node", "code"),
    [
        ({"code": "10000", "msg": "Success", "out_trade_no": ORDER, "qr_code": "https://qr.alipay.com/bax1"}, None),
        ({"code": "10000", "msg": "Success", "out_trade_no": ORDER}, "bad_precreate"),
        ({"code": "10000", "msg": "Success", "out_trade_no": "genq-order-0002", "qr_code": "x"}, "bad_precreate"),
    ],
)
def test_precreate_answers_are_checked(ali_sim, clock, other_key, node, code) -> None:
    """Signed with the test's key over its own (pretty) text; a success must carry our order's QR."""
    answer = signed_answer(other_key, json.dumps(node, indent=1), PRECREATE_NODE)
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=answer))
    with httpx.Client(transport=transport, base_url=GATEWAY) as http:
        client = client_for(http, ali_sim, clock, alipay_public_key=other_key.public_key())
        if code is None:
            assert precreate(client) == {"qr_code": node["qr_code"], "out_trade_no": ORDER}
            return
        with pytest.raises(VendorProtocolError) as info:
            precreate(client)

    assert info.value.code == code


def test_an_unsigned_precreate_success_is_a_protocol_error(ali_sim, clock) -> None:
    node = {"code": "10000", "msg": "Success", "out_trade_no": ORDER, "qr_code": "https://qr.alipay.com/bax1"}
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={PRECREATE_NODE: node}))
    with httpx.Client(transport=transport, base_url=GATEWAY) as http, pytest.raises(VendorProtocolError) as info:
        precreate(client_for(http, ali_sim, clock))

    assert info.value.code == "unsigned_response"


@pytest.mark.parametrize(
    ("code", "sub_code", "bucket"),
    [
        ("20000", "isp.unknow-error", VendorUnavailable),
        ("40004", "ACQ.SYSTEM_ERROR", VendorUnavailable),
        ("40004", "ACQ.TOTAL_FEE_EXCEED", VendorRejected),
        ("40004", "ACQ.ACCESS_FORBIDDEN", VendorRejected),
    ],
)
def test_precreate_error_codes_are_classified(ali_sim, clock, other_key, code, sub_code, bucket) -> None:
    node = json.dumps({"code": code, "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "出错了"})
    answer = signed_answer(other_key, node, PRECREATE_NODE)
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=answer))
    with httpx.Client(transport=transport, base_url=GATEWAY) as http, pytest.raises(VendorError) as info:
        precreate(client_for(http, ali_sim, clock, alipay_public_key=other_key.public_key()))

    assert type(info.value) is bucket and info.value.code == f"alipay_{sub_code}"


def test_precreate_errors_from_the_simulator(ali_sim, ali_http, ali, clock, other_key) -> None:
    """A wrong app key, a changed amount for a known order, and a paid order are all permanent."""
    failures: list[str] = []
    attempts = [
        lambda: precreate(client_for(ali_http, ali_sim, clock, private_key=other_key)),
        lambda: ali.precreate(ORDER, Decimal("0.01"), SUBJECT, NOTIFY_URL),
        lambda: (ali_sim.pay(ORDER), precreate(ali)),
    ]
    precreate(ali)
    for attempt in attempts:
        with pytest.raises(VendorRejected) as info:
            attempt()
        failures.append(info.value.code)

    assert failures == [
        "alipay_isv.invalid-signature",
        "alipay_ACQ.CONTEXT_INCONSISTENT",
        "alipay_ACQ.TRADE_HAS_SUCCESS",
    ]


@pytest.mark.parametrize(("kind", "code"), [("http_500", "http_500"), ("transport", "transport")])
def test_precreate_server_errors_are_unavailable(ali_sim, ali, kind, code) -> None:
    ali_sim.configure(failure_rate={"/gateway.do": 1.0}, failure_kind=kind)

    with pytest.raises(VendorUnavailable) as info:
        precreate(ali)

    assert info.value.code == code and ali_sim.stats()["orders"] == 0


# --- admin -----------------------------------------------------------------------------------------


def test_admin_pay_config_calls_stats_and_reset(ali_sim, ali_http, inbox) -> None:
    unknown = ali_http.post("/__sim/alipay/pay", json={"out_trade_no": "genq-order-0002"})
    closing = {"total_amount": "9.90", "notify_url": NOTIFY_URL, "trade_status": "TRADE_CLOSED"}
    closed = ali_http.post("/__sim/alipay/pay", json={"out_trade_no": "genq-order-0002", **closing})
    again = ali_http.post("/__sim/alipay/pay", json={"out_trade_no": "genq-order-0002"})
    bad = ali_http.post("/__sim/alipay/pay", json={"out_trade_no": "x", "total_amount": 9.9, "notify_url": NOTIFY_URL})
    ali_sim.tick()
    config = ali_http.post("/__sim/config", json={"trade_status": "TRADE_FINISHED"}).json()
    refused = ali_http.post("/__sim/config", json={"trade_status": "WAIT_BUYER_PAY"})
    stats = ali_http.get("/__sim/stats").json()
    ali_http.post("/__sim/reset")

    assert (unknown.status_code, closed.status_code, again.status_code, bad.status_code) == (404, 200, 409, 400)
    assert inbox.form()["trade_status"] == "TRADE_CLOSED" and inbox.form()["total_amount"] == "9.90"
    assert config["trade_status"] == "TRADE_FINISHED" and refused.status_code == 400
    assert stats["closed"] == 1 and stats["deliveries"]["acknowledged"] == 1
    assert ali_sim.stats()["orders"] == 0 and ali_sim.deliveries == []


# --- secrets ---------------------------------------------------------------------------------------


def pem(key: RSAPrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return raw.decode()


def test_keys_never_in_call_log_admin_or_exceptions(ali_sim, ali_http, ali, inbox, clock, other_key) -> None:
    failures: list[Exception] = []
    form = paid_notify(ali_sim, ali_http, ali, inbox)
    for client in (client_for(ali_http, ali_sim, clock, private_key=other_key),
                   client_for(ali_http, ali_sim, clock, alipay_public_key=other_key.public_key())):  # fmt: skip
        try:
            client.query(ORDER)
        except VendorError as exc:
            failures.append(exc)
    try:
        parse(ali_sim, {**form, "total_amount": "1.00"})
    except NotifyRejected as exc:
        failures.append(exc)

    secret_lines = [line for k in (ali_sim.app_private_key, other_key) for line in pem(k).splitlines()[1:-1]]
    shown = [f"{exc} {exc!r} {getattr(exc, 'detail', '')}" for exc in failures]
    shown += [ali_http.get(f"/__sim/{page}").text for page in ("calls", "config", "stats")]
    shown += [repr(ali_sim.calls), repr(ali_sim.deliveries), repr(ali), repr(ali_sim.knobs)]
    assert len(failures) == 3
    assert not [text for text in shown if any(line in text for line in secret_lines)]
    assert all("sign" not in call.body for call in ali_sim.calls)


# --- loopback: uvicorn serving the simulator, a real notify receiver ---------------------------------


class _Receiver(ThreadingHTTPServer):
    """A genq-like notify endpoint: parse, then answer exactly `success` (or `fail`)."""

    alipay_public_key: RSAPublicKey
    received: queue.Queue[AlipayTrade]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        try:
            trade = parse_notify(form, alipay_public_key=self.server.alipay_public_key, app_id=APP_ID)
        except NotifyRejected:
            answer = b"fail"
        else:
            self.server.received.put(trade)
            answer = ACK.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def served(clock) -> Iterator[tuple[AlipaySim, str]]:
    """An AlipaySim with the default (real HTTP) delivery behind uvicorn on a free 127.0.0.1 port."""
    sim = AlipaySim(app_id=APP_ID, clock=clock, seed=3)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    yield sim, f"http://127.0.0.1:{sock.getsockname()[1]}"
    sim.stop_ticker()
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def receiver(served) -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _ReceiverHandler)
    server.alipay_public_key = served[0].alipay_public_key
    server.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def test_page_pay_notify_and_query_over_loopback(served, receiver, clock) -> None:
    """The unchanged client builds the cashier URL (opened like a browser would) and queries over
    HTTP; auto-pay and the ticker deliver a real notify to a receiver that answers `success`."""
    sim, base = served
    notify_url = f"http://127.0.0.1:{receiver.server_address[1]}/v1/payments/alipay/notify"
    sim.configure(auto_pay_after_s=5)
    with httpx.Client(base_url=base, timeout=10) as http:
        client = client_for(http, sim, clock)

        url = client.page_pay(ORDER, PRICE, "genq pro membership", notify_url)
        cashier = http.get(url)
        unpaid = client.query(ORDER)
        clock.advance(5)
        sim.start_ticker(interval_s=0.05)
        trade = receiver.received.get(timeout=10)
        sim.stop_ticker()
        queried = client.query(ORDER)

    assert url.startswith(f"{base}/gateway.do?") and cashier.status_code == 200
    assert unpaid is None
    assert trade.total_amount == PRICE and trade.trade_status == "TRADE_SUCCESS"
    assert queried is not None and queried.trade_no == trade.trade_no
    assert [(d.status, d.answer, d.acknowledged) for d in sim.deliveries] == [(200, b"success", True)]


def test_precreate_auto_pay_notify_and_query_over_loopback(served, receiver, clock) -> None:
    """What `genq run` relies on: the order exists from precreate, so auto-pay needs no browser."""
    sim, base = served
    notify_url = f"http://127.0.0.1:{receiver.server_address[1]}/v1/payments/alipay/notify"
    sim.configure(auto_pay_after_s=5)
    with httpx.Client(base_url=base, timeout=10) as http:
        client = client_for(http, sim, clock)

        answer = client.precreate(ORDER, PRICE, "genq pro membership", notify_url)
        unpaid = client.query(ORDER)
        clock.advance(5)
        sim.start_ticker(interval_s=0.05)
        trade = receiver.received.get(timeout=10)
        sim.stop_ticker()
        queried = client.query(ORDER)

    assert answer["qr_code"].startswith("https://qr.alipay.com/") and unpaid is None
    assert trade.out_trade_no == ORDER and trade.total_amount == PRICE and trade.trade_status == "TRADE_SUCCESS"
    assert queried is not None and queried.trade_no == trade.trade_no
