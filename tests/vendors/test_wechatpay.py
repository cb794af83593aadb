"""WeChat Pay v3: notifications from WechatPaySim verified, decrypted and parsed; the sender's retries;
WechatPayClient's prepay and signed order query against the simulator; and all of it on loopback."""

from __future__ import annotations

import base64
import json
import queue
import re
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.support import wait_for
from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.sim.common import asgi_app
from vendors.sim.wechatpay import WechatPaySim
from vendors.wechatpay import (
    ACK,
    NotificationRejected,
    Transaction,
    WechatPayClient,
    decrypt_resource,
    nack,
    parse_notification,
    verify_notification,
)

MCHID = "1900009191"
APPID = "wxd678efh567hg6787"
GATEWAY = "https://api.mch.weixin.qq.com"
NOTIFY_URL = "https://genq.example/v1/payments/wechatpay/notify"
ORDER = "genq-order-0001"
PRICE_FEN = 9900
Received = tuple[str, dict[str, str], bytes]


class Inbox:
    """A `deliver` that keeps every attempt and answers from `script`, then `default` (204)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[tuple[int, bytes]] = []
        self.default: tuple[int, bytes] = (204, b"")

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        self.received.append((url, dict(headers), body))
        return self.script.pop(0) if self.script else self.default


@pytest.fixture(scope="module")
def other_key() -> RSAPrivateKey:
    """A key no simulator knows (made per test run, never stored)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def api_v3_key() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def wx_sim(clock, api_v3_key: str, inbox: Inbox) -> WechatPaySim:
    return WechatPaySim(mchid=MCHID, appid=APPID, api_v3_key=api_v3_key, clock=clock, seed=7, deliver=inbox)


@pytest.fixture
def wx_http(wx_sim: WechatPaySim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(wx_sim.handle), base_url=GATEWAY, timeout=5) as http:
        yield http


def client_for(http: httpx.Client, sim: WechatPaySim, clock: Any, **overrides: Any) -> WechatPayClient:
    settings: dict[str, Any] = {
        "mchid": MCHID,
        "appid": APPID,
        "serial_no": sim.merchant_serial,
        "private_key": sim.merchant_private_key,
        "public_keys": sim.public_keys,
        "clock": clock,
        **overrides,
    }
    return WechatPayClient(http, **settings)


@pytest.fixture
def wx(wx_http: httpx.Client, wx_sim: WechatPaySim, clock) -> WechatPayClient:
    return client_for(wx_http, wx_sim, clock)


def paid_notification(sim: WechatPaySim, client: WechatPayClient, inbox: Inbox) -> tuple[dict[str, str], bytes]:
    """Prepay ORDER, pay it in the simulator, deliver: the (headers, body) genq received."""
    client.prepay(ORDER, PRICE_FEN, "genq pro membership", NOTIFY_URL)
    sim.pay(ORDER)
    sim.tick()
    _, headers, body = inbox.received[-1]
    return headers, body


def parse(sim: WechatPaySim, headers: Mapping[str, str], body: bytes, key: str, now: float) -> Transaction:
    return parse_notification(headers, body, public_keys=sim.public_keys, api_v3_key=key, now=now)


def signed_headers(key: RSAPrivateKey, serial: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Headers as WeChat Pay signs them, made by the test with its own key."""
    nonce = secrets.token_hex(16)
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": signature,
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def sealed(plain: Mapping[str, object], api_v3_key: str, original_type: str = "transaction") -> bytes:
    """A notification body with `plain` encrypted the documented way, made by the test."""
    nonce = secrets.token_hex(6)
    data = AESGCM(api_v3_key.encode()).encrypt(nonce.encode(), json.dumps(plain).encode(), original_type.encode())
    ciphertext = base64.b64encode(data).decode()
    resource = {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM", "ciphertext": ciphertext,
                "associated_data": original_type, "nonce": nonce}  # fmt: skip
    event = "TRANSACTION.SUCCESS" if original_type == "transaction" else "REFUND.SUCCESS"
    return json.dumps(
        {"id": "EV-1", "event_type": event, "resource_type": "encrypt-resource", "resource": resource}
    ).encode()


# --- notifications ---------------------------------------------------------------------------------


def test_notification_verifies_decrypts_and_parses(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)

    transaction = parse(wx_sim, headers, body, api_v3_key, clock.now)

    assert inbox.received[0][0] == NOTIFY_URL
    assert (transaction.out_trade_no, transaction.trade_state) == (ORDER, "SUCCESS")
    assert (transaction.total, transaction.currency) == (PRICE_FEN, "CNY")
    assert (transaction.appid, transaction.mchid) == (APPID, MCHID)
    assert re.fullmatch(r"4200\d{24}", transaction.transaction_id or "")
    assert transaction.success_time == "2025-10-09T16:53:20+08:00"
    assert headers["Wechatpay-Serial"] == wx_sim.serial and wx_sim.serial.startswith("PUB_KEY_ID_SIM")
    assert json.loads(body)["event_type"] == "TRANSACTION.SUCCESS"
    assert [d.acknowledged for d in wx_sim.deliveries] == [True]


def test_hand_built_notification_parses(clock, api_v3_key, other_key) -> None:
    """The verifier follows the documented rules, not just the simulator's habits."""
    plain = {"appid": APPID, "mchid": MCHID, "out_trade_no": ORDER, "transaction_id": "4200000000000000000000000001",
             "trade_state": "SUCCESS", "success_time": "2025-10-09T16:53:20+08:00",
             "amount": {"total": 1, "currency": "CNY"}}  # fmt: skip
    body = sealed(plain, api_v3_key)
    headers = signed_headers(other_key, "PUB_KEY_ID_TEST", body, int(clock.now))

    transaction = parse_notification(
        headers, body, public_keys={"PUB_KEY_ID_TEST": other_key.public_key()}, api_v3_key=api_v3_key, now=clock.now
    )

    assert transaction.transaction_id == "4200000000000000000000000001" and transaction.total == 1


def test_tampered_body_is_bad_signature(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)

    with pytest.raises(NotificationRejected) as info:
        parse(wx_sim, headers, body.replace(b'"id":"EV-', b'"id":"EW-'), api_v3_key, clock.now)

    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"tamper_signature": True}, "bad_signature"),
        ({"wrong_serial": True}, "unknown_serial"),
        ({"stale_timestamp": 360}, "stale_timestamp"),
    ],
    ids=["wrong-signature", "unknown-serial", "stale-6-minutes"],
)
def test_injected_faults_are_rejected_with_their_reason(wx_sim, wx, inbox, clock, api_v3_key, knobs, reason) -> None:
    wx_sim.configure(**knobs)
    headers, body = paid_notification(wx_sim, wx, inbox)

    with pytest.raises(NotificationRejected) as info:
        parse(wx_sim, headers, body, api_v3_key, clock.now)

    assert info.value.reason == reason


def test_probe_signature_is_rejected(wx_sim, wx, inbox, clock) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]

    with pytest.raises(NotificationRejected) as info:
        verify_notification(headers, body, public_keys=wx_sim.public_keys, now=clock.now)

    assert info.value.reason == "probe"


def test_genuine_notification_six_minutes_late_is_stale(wx_sim, wx, inbox, clock) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)

    with pytest.raises(NotificationRejected) as info:
        verify_notification(headers, body, public_keys=wx_sim.public_keys, now=clock.now + 360)

    assert info.value.reason == "stale_timestamp"


@pytest.mark.parametrize(
    "missing", ["Wechatpay-Serial", "Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce"]
)
def test_missing_header_is_malformed(wx_sim, wx, inbox, clock, missing) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)
    del headers[missing]

    with pytest.raises(NotificationRejected) as info:
        verify_notification(headers, body, public_keys=wx_sim.public_keys, now=clock.now)

    assert info.value.reason == "malformed"


def test_wrong_api_v3_key_is_undecryptable(wx_sim, wx, inbox, clock) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)

    with pytest.raises(NotificationRejected) as info:
        parse(wx_sim, headers, body, secrets.token_hex(16), clock.now)

    assert info.value.reason == "undecryptable"


def test_altered_ciphertext_is_undecryptable(wx_sim, wx, inbox, api_v3_key) -> None:
    _, body = paid_notification(wx_sim, wx, inbox)
    resource = json.loads(body)["resource"]
    data = bytearray(base64.b64decode(resource["ciphertext"]))
    data[0] ^= 1

    with pytest.raises(NotificationRejected) as info:
        decrypt_resource({**resource, "ciphertext": base64.b64encode(bytes(data)).decode()}, api_v3_key=api_v3_key)

    assert info.value.reason == "undecryptable"


def test_refund_notice_is_not_a_transaction(clock, api_v3_key, other_key) -> None:
    body = sealed({"out_trade_no": ORDER, "refund_status": "SUCCESS"}, api_v3_key, original_type="refund")
    headers = signed_headers(other_key, "PUB_KEY_ID_TEST", body, int(clock.now))

    with pytest.raises(NotificationRejected) as info:
        parse_notification(headers, body, public_keys={"PUB_KEY_ID_TEST": other_key.public_key()},
                           api_v3_key=api_v3_key, now=clock.now)  # fmt: skip

    assert info.value.reason == "not_a_transaction"


def test_another_merchants_transaction_is_wrong_merchant(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    headers, body = paid_notification(wx_sim, wx, inbox)

    with pytest.raises(NotificationRejected) as info:
        parse_notification(headers, body, public_keys=wx_sim.public_keys, api_v3_key=api_v3_key, now=clock.now,
                           mchid="1900000000")  # fmt: skip

    assert info.value.reason == "wrong_merchant"


def test_ack_and_nack() -> None:
    refusal = nack("signature mismatch", status=401)

    assert (ACK.status, ACK.body) == (204, b"")
    assert refusal.status == 401 and refusal.content_type == "application/json"
    assert json.loads(refusal.body) == {"code": "FAIL", "message": "signature mismatch"}
    with pytest.raises(ValueError):
        nack("fine", status=200)


# --- the sender ------------------------------------------------------------------------------------


def test_sender_retries_a_500_on_schedule_and_stops_at_the_first_204(wx_sim, wx, inbox, clock) -> None:
    """Schedule 0.5 s, 1 s, ...: 500 at t0, 500 at +0.5, 204 at +1.5, then silence."""
    inbox.script = [(500, b'{"code":"FAIL","message":"db down"}'), (500, b"")]
    start = clock.now
    paid_notification(wx_sim, wx, inbox)

    clock.advance(0.4)
    early = wx_sim.tick()
    clock.advance(0.1)
    second = wx_sim.tick()
    clock.advance(1.0)
    third = wx_sim.tick()
    clock.advance(3600)
    after = wx_sim.tick()

    assert (early, second, third, after) == (0, 1, 1, 0)
    assert [(d.attempt, d.at - start, d.status, d.acknowledged) for d in wx_sim.deliveries] == [
        (1, 0.0, 500, False), (2, 0.5, 500, False), (3, 1.5, 204, True),
    ]  # fmt: skip
    assert len({body for _, _, body in inbox.received}) == 1
    assert wx_sim.stats()["deliveries"] == {"attempts": 3, "acknowledged": 1, "pending": 0, "given_up": 0}


def test_sender_gives_up_when_the_schedule_runs_out(wx_sim, wx, inbox, clock) -> None:
    wx_sim.configure(retry_schedule_s=[1, 1])
    inbox.default = (0, b"")  # nobody answers
    paid_notification(wx_sim, wx, inbox)

    for _ in range(5):
        clock.advance(1)
        wx_sim.tick()

    assert [d.attempt for d in wx_sim.deliveries] == [1, 2, 3]
    assert wx_sim.stats()["deliveries"]["given_up"] == 1


def test_every_attempt_is_signed_afresh(wx_sim, wx, inbox, clock) -> None:
    inbox.script = [(503, b"")]
    paid_notification(wx_sim, wx, inbox)
    clock.advance(0.5)
    wx_sim.tick()

    (_, first, body), (_, second, again) = inbox.received

    assert body == again and first["Wechatpay-Nonce"] != second["Wechatpay-Nonce"]
    verify_notification(second, again, public_keys=wx_sim.public_keys, now=clock.now)


def test_duplicates_deliver_n_plus_one_identical_notifications(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    wx_sim.configure(duplicates=2)

    paid_notification(wx_sim, wx, inbox)
    parsed = {parse(wx_sim, h, b, api_v3_key, clock.now) for _, h, b in inbox.received}

    assert len(inbox.received) == 3 and len({body for _, _, body in inbox.received}) == 1
    assert len(parsed) == 1


def test_delay_holds_the_first_attempt(wx_sim, wx, inbox, clock) -> None:
    wx_sim.configure(delay_s=30)
    wx.prepay(ORDER, PRICE_FEN, "genq pro membership", NOTIFY_URL)

    wx_sim.pay(ORDER)
    on_time = wx_sim.tick()
    clock.advance(30)
    late = wx_sim.tick()

    assert (on_time, late) == (0, 1)


def test_amount_override_shows_in_the_parsed_total(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    wx_sim.configure(amount_override=1)

    headers, body = paid_notification(wx_sim, wx, inbox)
    queried = wx.query(ORDER)

    assert parse(wx_sim, headers, body, api_v3_key, clock.now).total == 1
    assert queried is not None and queried.total == 1


def test_auto_pay_pays_a_prepaid_order_after_the_delay(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    wx_sim.configure(auto_pay_after_s=30)
    wx.prepay(ORDER, PRICE_FEN, "genq pro membership", NOTIFY_URL)

    clock.advance(29)
    before = wx_sim.tick()
    clock.advance(1)
    wx_sim.tick()

    assert before == 0 and len(inbox.received) == 1
    _, headers, body = inbox.received[0]
    assert parse(wx_sim, headers, body, api_v3_key, clock.now).trade_state == "SUCCESS"


# --- the merchant client ---------------------------------------------------------------------------


def test_prepay_answers_a_code_url_and_records_the_order(wx_sim, wx) -> None:
    params = wx.prepay(ORDER, PRICE_FEN, "genq pro membership", NOTIFY_URL)

    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=\w{7}", params["code_url"])
    assert wx_sim.stats()["orders"] == 1
    call = wx_sim.calls[0]
    assert (call.method, call.path, call.task_id) == ("POST", "/v3/pay/transactions/native", ORDER)
    assert call.body["amount"] == {"total": PRICE_FEN, "currency": "CNY"}


def test_query_round_trip_returns_the_paid_state(wx_sim, wx, inbox, clock, api_v3_key) -> None:
    wx.prepay(ORDER, PRICE_FEN, "genq pro membership", NOTIFY_URL)
    unpaid = wx.query(ORDER)
    wx_sim.pay(ORDER)
    wx_sim.tick()
    _, headers, body = inbox.received[0]

    paid = wx.query(ORDER)

    assert unpaid is not None and (unpaid.trade_state, unpaid.transaction_id, unpaid.total) == ("NOTPAY", None, 9900)
    assert paid == parse(wx_sim, headers, body, api_v3_key, clock.now)
    assert wx_sim.calls[-1].path == f"/v3/pay/transactions/out-trade-no/{ORDER}"


def test_unknown_order_is_none(wx) -> None:
    assert wx.query("never-made-0001") is None


def test_a_wrong_merchant_key_is_rejected(wx_http, wx_sim, clock, other_key) -> None:
    client = client_for(wx_http, wx_sim, clock, private_key=other_key)

    with pytest.raises(VendorRejected) as info:
        client.query(ORDER)

    assert info.value.code == "wechatpay_SIGN_ERROR"


def test_a_stale_merchant_clock_is_rejected(wx_http, wx_sim, clock) -> None:
    client = client_for(wx_http, wx_sim, lambda: clock.now - 600)

    with pytest.raises(VendorRejected) as info:
        client.prepay(ORDER, PRICE_FEN, "genq", NOTIFY_URL)

    assert info.value.code == "wechatpay_SIGN_ERROR"


def test_a_configured_merchant_key_can_be_trusted(clock, other_key) -> None:
    """genq's own merchant key (public half given to the simulator) works as well as the generated one."""
    serial = "5F3A00000000000000000000000000000000C0DE"
    sim = WechatPaySim(mchid=MCHID, appid=APPID, clock=clock, merchant_public_keys={serial: other_key.public_key()})
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=GATEWAY) as http:
        client = client_for(http, sim, clock, serial_no=serial, private_key=other_key)

        assert client.prepay(ORDER, PRICE_FEN, "genq", NOTIFY_URL)["code_url"]


@pytest.mark.parametrize(("serial", "reason"), [("sim", "bad_signature"), ("other", "unknown_serial")])
def test_badly_signed_answers_are_protocol_errors(wx_http, wx_sim, clock, other_key, serial, reason) -> None:
    """The client trusts only the key it was configured with: here, the wrong one."""
    key_id = wx_sim.serial if serial == "sim" else "PUB_KEY_ID_OTHER"
    client = client_for(wx_http, wx_sim, clock, public_keys={key_id: other_key.public_key()})

    with pytest.raises(VendorProtocolError) as info:
        client.prepay(ORDER, PRICE_FEN, "genq", NOTIFY_URL)

    assert info.value.code == f"response_{reason}"


def test_unsigned_answer_is_a_protocol_error(wx_sim, clock) -> None:
    unsigned = httpx.MockTransport(lambda _: httpx.Response(200, json={"code_url": "weixin://wxpay/bizpayurl?pr=x"}))
    with httpx.Client(transport=unsigned, base_url=GATEWAY) as http, pytest.raises(VendorProtocolError) as info:
        client_for(http, wx_sim, clock).prepay(ORDER, PRICE_FEN, "genq", NOTIFY_URL)

    assert info.value.code == "response_malformed"


@pytest.mark.parametrize(("kind", "code"), [("http_500", "http_500"), ("transport", "transport")])
def test_server_errors_and_transport_failures_are_unavailable(wx_sim, wx, kind, code) -> None:
    wx_sim.configure(failure_rate=1.0, failure_kind=kind)

    with pytest.raises(VendorUnavailable) as info:
        wx.query(ORDER)

    assert info.value.code == code


def test_bad_request_is_rejected(wx) -> None:
    with pytest.raises(VendorRejected) as info:
        wx.prepay("short", PRICE_FEN, "genq", NOTIFY_URL)

    assert info.value.code == "wechatpay_PARAM_ERROR"


# --- admin -----------------------------------------------------------------------------------------


def test_admin_pay_config_calls_stats_and_reset(wx_sim, wx_http, inbox, clock) -> None:
    unknown = wx_http.post("/__sim/wechatpay/pay", json={"out_trade_no": "genq-order-0002"})
    paid = wx_http.post("/__sim/wechatpay/pay", json={"out_trade_no": "genq-order-0002", "amount": 100,
                                                      "notify_url": NOTIFY_URL})  # fmt: skip
    again = wx_http.post("/__sim/wechatpay/pay", json={"out_trade_no": "genq-order-0002"})
    bad = wx_http.post("/__sim/wechatpay/pay", json={"out_trade_no": "genq-order-0003", "amount": "lots"})
    wx_sim.tick()
    config = wx_http.post("/__sim/config", json={"duplicates": 1, "retry_schedule_s": [1, 2]}).json()
    stats = wx_http.get("/__sim/stats").json()
    wx_http.post("/__sim/reset")

    assert (unknown.status_code, paid.status_code, again.status_code, bad.status_code) == (404, 200, 409, 400)
    assert re.fullmatch(r"4200\d{24}", paid.json()["trade_id"]) and len(inbox.received) == 1
    assert config["duplicates"] == 1 and config["retry_schedule_s"] == [1, 2]
    assert stats["paid"] == 1 and stats["deliveries"]["acknowledged"] == 1
    assert wx_sim.stats()["orders"] == 0 and wx_sim.deliveries == []


def test_knob_values_are_checked(wx_sim) -> None:
    for changes in ({"duplicates": -1}, {"failure_kind": "busy"}, {"amount_override": 0}, {"nope": 1}):
        with pytest.raises(ValueError):
            wx_sim.configure(**changes)


# --- secrets ---------------------------------------------------------------------------------------


def pem(key: RSAPrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return raw.decode()


def test_keys_never_in_call_log_admin_or_exceptions(wx_sim, wx_http, wx, inbox, clock, api_v3_key, other_key) -> None:
    failures: list[Exception] = []
    headers, body = paid_notification(wx_sim, wx, inbox)
    wx.query(ORDER)
    for client in (client_for(wx_http, wx_sim, clock, private_key=other_key),
                   client_for(wx_http, wx_sim, clock, public_keys={})):  # fmt: skip
        try:
            client.query(ORDER)
        except VendorError as exc:
            failures.append(exc)
    for key in (api_v3_key, secrets.token_hex(16)):
        try:
            parse(wx_sim, {**headers, "Wechatpay-Signature": "eA=="}, body, key, clock.now)
        except NotificationRejected as exc:
            failures.append(exc)
    with pytest.raises(ValueError) as short:
        decrypt_resource({}, api_v3_key=api_v3_key[:-1])
    failures.append(short.value)

    secret_texts = [api_v3_key, *(pem(k).splitlines()[1] for k in (wx_sim.merchant_private_key, other_key))]
    shown = [f"{exc} {exc!r} {getattr(exc, 'detail', '')}" for exc in failures]
    shown += [wx_http.get(f"/__sim/{page}").text for page in ("calls", "config", "stats")]
    shown += [repr(wx_sim.calls), repr(wx_sim.deliveries), repr(wx), repr(wx_sim.knobs)]
    assert len(failures) == 5
    assert not [text for text in shown if any(secret in text for secret in secret_texts)]


# --- loopback: uvicorn serving the simulator, a real notification receiver ----------------------------


class _Receiver(ThreadingHTTPServer):
    """A genq-like notify endpoint: parse, then ACK (204) or nack."""

    public_keys: Mapping[str, RSAPublicKey]
    api_v3_key: str
    clock: Any
    received: queue.Queue[Transaction]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            transaction = parse_notification(dict(self.headers.items()), body, public_keys=self.server.public_keys,
                                             api_v3_key=self.server.api_v3_key, now=self.server.clock())  # fmt: skip
        except NotificationRejected as exc:
            reply = nack(exc.reason, status=401)
        else:
            self.server.received.put(transaction)
            reply = ACK
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve(sim: WechatPaySim) -> tuple[uvicorn.Server, threading.Thread, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    return server, thread, sock


@pytest.fixture
def served(clock, api_v3_key) -> Iterator[tuple[WechatPaySim, str]]:
    """A WechatPaySim with the default (real HTTP) delivery behind uvicorn on a free 127.0.0.1 port."""
    sim = WechatPaySim(mchid=MCHID, appid=APPID, api_v3_key=api_v3_key, clock=clock, seed=3)
    server, thread, sock = serve(sim)
    yield sim, f"http://127.0.0.1:{sock.getsockname()[1]}"
    sim.stop_ticker()
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def receiver(served, clock, api_v3_key) -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _ReceiverHandler)
    server.public_keys, server.api_v3_key, server.clock = served[0].public_keys, api_v3_key, clock
    server.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def test_prepay_notification_and_query_over_loopback(served, receiver, clock) -> None:
    """The unchanged client prepays and queries over HTTP; the ticker delivers a real notification
    to a receiver on another port, which verifies, decrypts and acknowledges it."""
    sim, base = served
    notify_url = f"http://127.0.0.1:{receiver.server_address[1]}/v1/payments/wechatpay/notify"
    with httpx.Client(base_url=base, timeout=10) as http:
        client = client_for(http, sim, clock)

        params = client.prepay(ORDER, PRICE_FEN, "genq pro membership", notify_url)
        unpaid = client.query(ORDER)
        paid_via_admin = http.post("/__sim/wechatpay/pay", json={"out_trade_no": ORDER})
        sim.start_ticker(interval_s=0.05)
        transaction = receiver.received.get(timeout=10)
        sim.stop_ticker()
        queried = client.query(ORDER)

    assert params["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert unpaid is not None and unpaid.trade_state == "NOTPAY"
    assert paid_via_admin.json()["trade_id"] == transaction.transaction_id
    assert queried == transaction and transaction.total == PRICE_FEN
    assert [(d.status, d.acknowledged) for d in sim.deliveries] == [(204, True)]
