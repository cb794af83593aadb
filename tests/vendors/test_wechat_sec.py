"""WechatModeration against WechatSim over httpx.MockTransport (time moves by the fake clock), its
push verification against the simulator's pushes, and both served for real on loopback."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support import wait_for
from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.moderation import (
    CheckItem,
    Decision,
    ItemKind,
    MemoryTokenCache,
    PushAnswer,
    PushRejected,
    PushRequest,
)
from vendors.sim.common import asgi_app
from vendors.sim.wechat import IMAGE_PATH, MEDIA_PATH, STABLE_TOKEN_PATH, TEXT_PATH, TOKEN_PATH, WechatSim
from vendors.wechat_sec import WechatModeration, push_signature, text_chunks

APPID = "wx5f3c2a1b0d9e8f7a"
SECRET = "wxsec-8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a"
PUSH_TOKEN = "pushtok-2b4d6f8a0c1e3a5b7d9f"
OPENID = "oSimUserOpenid000000000000A1"
OTHER_OPENID = "oSimUserOpenid000000000000B2"
PUSH_URL = "https://genq.example/v1/callbacks/moderation/wechat"
CACHE_KEY = f"wechat:access_token:{APPID}"
IMAGE = "https://img.example/inputs/cat.png"
Inbox = list[tuple[str, dict[str, str], bytes]]
Deliver = Callable[[str, Mapping[str, str], bytes], None]


class RecordingTokens(MemoryTokenCache):
    """A TokenCache that remembers every token and ttl it was given (for ttl and secrecy asserts)."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[str, str, float]] = []

    def set(self, key: str, token: str, ttl_s: float) -> None:
        super().set(key, token, ttl_s)
        self.history.append((key, token, ttl_s))


@pytest.fixture
def inbox() -> Inbox:
    """Every push the simulator delivered, as (url, headers, body)."""
    return []


def recorder(inbox: Inbox) -> Deliver:
    def deliver(url: str, headers: Mapping[str, str], body: bytes) -> None:
        inbox.append((url, dict(headers), body))

    return deliver


@pytest.fixture
def wx_sim(clock, inbox: Inbox) -> WechatSim:
    return WechatSim(
        appid=APPID, secret=SECRET, push_token=PUSH_TOKEN, push_url=PUSH_URL, clock=clock, seed=7,
        deliver=recorder(inbox),
    )  # fmt: skip


@pytest.fixture
def wire() -> list[httpx.Request]:
    """Every request the adapter put on the wire, as the simulator received it."""
    return []


@pytest.fixture
def wx_http(wx_sim: WechatSim, wire: list[httpx.Request]) -> Iterator[httpx.Client]:
    def handle(request: httpx.Request) -> httpx.Response:
        wire.append(request)
        return wx_sim.handle(request)

    with httpx.Client(transport=httpx.MockTransport(handle), base_url="https://api.weixin.qq.com") as http:
        yield http


@pytest.fixture
def tokens() -> RecordingTokens:
    return RecordingTokens()


@pytest.fixture
def wechat(wx_http: httpx.Client, tokens: RecordingTokens, clock) -> WechatModeration:
    return adapter(wx_http, tokens, clock)


def adapter(http: httpx.Client, tokens: Any, clock: Any = time.time, **kw: Any) -> WechatModeration:
    args: dict[str, Any] = {"appid": APPID, "secret": SECRET, "openid": OPENID, "push_token": PUSH_TOKEN}
    return WechatModeration(http, tokens=tokens, clock=clock, **(args | kw))


def text(content: str) -> CheckItem:
    return CheckItem(ItemKind.TEXT, content)


def image(url: str = IMAGE) -> CheckItem:
    return CheckItem(ItemKind.IMAGE, url)


def as_push(url: str, body: bytes = b"", method: str = "POST") -> PushRequest:
    parsed = httpx.URL(url)
    return PushRequest(method, dict(parsed.params), {"content-type": "application/json"}, body)


def signed_query(timestamp: str, nonce: str = "1234567890", token: str = PUSH_TOKEN) -> dict[str, str]:
    return {"signature": push_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


def paths(sim: WechatSim) -> list[str]:
    return [call.path for call in sim.calls]


# --- text: the verdict in the call -------------------------------------------------------------------

TEXT_VERDICTS = [
    pytest.param("a red fox in the snow", Decision.PASS, 1.0, (), id="pass"),
    pytest.param("a red fox sim-reject", Decision.REJECT, 0.95, ("20002",), id="reject"),
    pytest.param("a red fox sim-review", Decision.REVIEW, 0.55, ("21000",), id="review"),
    pytest.param("a red fox sim-keyword", Decision.REJECT, 1.0, ("20006",), id="keyword-no-prob"),
]


@pytest.mark.parametrize(("content", "decision", "confidence", "labels"), TEXT_VERDICTS)
def test_text_verdict_comes_in_the_call(wx_sim, wechat, content, decision, confidence, labels) -> None:
    submission = wechat.submit(text(content), reference="audit-1")

    assert submission.verdict is not None
    assert (submission.verdict.decision, submission.verdict.confidence) == (decision, confidence)
    assert submission.verdict.labels == labels
    assert submission.platform_task_id == wx_sim.calls[-1].task_id == submission.verdict.raw["trace_id"]


def test_text_body_is_v2_with_openid_scene_and_the_token_only_in_the_query(wechat, wire, tokens) -> None:
    wechat.submit(text("a red fox"), reference="audit-1")

    token_call, check = wire
    token = tokens.get(CACHE_KEY)
    assert token_call.method == "GET" and token_call.url.path == TOKEN_PATH
    assert dict(token_call.url.params) == {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    assert check.method == "POST" and check.url.path == TEXT_PATH
    assert dict(check.url.params) == {"access_token": token}
    assert json.loads(check.content) == {"version": 2, "openid": OPENID, "scene": 2, "content": "a red fox"}


def test_pass_with_a_model_prob_reports_it(wx_sim, wechat) -> None:
    wx_sim.configure(pass_prob=90)

    verdict = wechat.submit(text("a red fox"), reference="audit-1").verdict

    assert verdict is not None and (verdict.decision, verdict.confidence, verdict.labels) == (Decision.PASS, 0.9, ())


def test_scene_is_configurable(wx_http, tokens, wire) -> None:
    adapter(wx_http, tokens, scene=3).submit(text("a red fox"), reference="audit-1")

    assert json.loads(wire[-1].content)["scene"] == 3


def test_long_text_is_checked_in_overlapping_chunks_and_the_worst_wins(wx_sim, wechat) -> None:
    """4900 characters: two chunks; the second holds a review marker, so review wins."""
    content = "a" * 4889 + " sim-review"

    submission = wechat.submit(text(content), reference="audit-1")

    sent = [c.body["content"] for c in wx_sim.calls if c.path == TEXT_PATH]
    assert [len(str(s)) for s in sent] == [2500, 2450]
    assert submission.verdict is not None and submission.verdict.decision is Decision.REVIEW
    assert (submission.verdict.confidence, submission.verdict.labels) == (0.55, ("21000",))
    assert submission.platform_task_id == wx_sim.calls[-1].task_id
    assert len(submission.verdict.raw["chunks"]) == 2  # type: ignore[arg-type]


def test_a_marker_across_a_cut_is_seen_and_a_reject_stops_the_checks(wx_sim, wechat) -> None:
    """The marker straddles character 2500; the overlap catches it; the third chunk is never sent."""
    content = "a" * 2495 + "sim-reject" + "b" * 5000

    submission = wechat.submit(text(content), reference="audit-1")

    assert paths(wx_sim).count(TEXT_PATH) == 2
    assert submission.verdict is not None and submission.verdict.decision is Decision.REJECT
    assert submission.platform_task_id == wx_sim.calls[-1].task_id


@pytest.mark.parametrize("length", [0, 1, 2500, 2501, 2550, 4950, 4951, 12345])
def test_text_chunks_cover_the_text_within_the_limit(length: int) -> None:
    content = "".join(chr(0x4E00 + i % 500) for i in range(length))

    chunks = text_chunks(content)

    assert all(len(chunk) <= 2500 for chunk in chunks)
    assert chunks[0] == content[:2500] and content.endswith(chunks[-1])
    assert "".join(chunks[:1] + [chunk[50:] for chunk in chunks[1:]]) == content


def test_query_is_none(wechat) -> None:
    assert wechat.query("60ae120f-371d5872-7941a05b") is None


# --- images: a trace id now, the verdict by push -------------------------------------------------------

IMAGE_VERDICTS = [
    pytest.param(IMAGE, Decision.PASS, 1.0, (), id="pass"),
    pytest.param("https://img.example/sim-reject/cat.png", Decision.REJECT, 0.95, ("20002",), id="reject"),
    pytest.param("https://img.example/cat.png?tag=sim-review", Decision.REVIEW, 0.55, ("21000",), id="review"),
]


@pytest.mark.parametrize(("url", "decision", "confidence", "labels"), IMAGE_VERDICTS)
def test_image_verdict_arrives_by_push(wx_sim, clock, wechat, inbox, url, decision, confidence, labels) -> None:
    submission = wechat.submit(image(url), reference="audit-1")
    early = wx_sim.tick()
    clock.advance(wx_sim.knobs.push_delay_s)
    delivered = wx_sim.tick()

    (push_url, headers, body), *_ = inbox
    events, answer = wechat.parse_push(as_push(push_url, body))

    assert submission.verdict is None and submission.platform_task_id
    assert (early, delivered) == (0, 1)
    assert push_url.startswith(PUSH_URL + "?") and headers["Content-Type"] == "application/json"
    assert answer == PushAnswer(200, "success")
    assert [trace_id for trace_id, _ in events] == [submission.platform_task_id]
    verdict = events[0][1]
    assert (verdict.decision, verdict.confidence, verdict.labels) == (decision, confidence, labels)


def test_image_body_is_the_documented_v2_shape(wechat, wire) -> None:
    wechat.submit(image(), reference="audit-1")

    check = wire[-1]
    assert check.url.path == MEDIA_PATH and set(check.url.params) == {"access_token"}
    body = {"media_url": IMAGE, "media_type": 2, "version": 2, "openid": OPENID, "scene": 2}
    assert json.loads(check.content) == body


def test_the_push_is_the_documented_json_event_with_string_labels(wx_sim, clock, wechat, inbox) -> None:
    trace_id = wechat.submit(image("https://img.example/sim-reject.png"), reference="a").platform_task_id
    clock.advance(wx_sim.knobs.push_delay_s)
    wx_sim.tick()

    push = json.loads(inbox[0][2])

    assert push["MsgType"] == "event" and push["Event"] == "wxa_media_check" and push["version"] == 2
    assert (push["appid"], push["trace_id"], push["FromUserName"]) == (APPID, trace_id, OPENID)
    assert push["result"] == {"suggest": "risky", "label": "20002"}
    assert "media_url" not in push


def test_a_forced_completion_delivers_the_push_now(wx_sim, wx_http, wechat, inbox) -> None:
    trace_id = wechat.submit(image(), reference="audit-1").platform_task_id

    forced = wx_http.post(f"/__sim/jobs/{trace_id}/complete")
    unknown = wx_http.post("/__sim/jobs/nope/complete")
    wx_sim.tick()

    assert (forced.status_code, unknown.status_code) == (200, 404)
    assert len(inbox) == 1


def test_a_non_url_image_is_rejected_before_any_call(wx_sim, wechat) -> None:
    with pytest.raises(VendorRejected) as info:
        wechat.submit(image("data:image/png;base64,AAAA"), reference="audit-1")

    assert info.value.code == "bad_media_url" and wx_sim.calls == []


# --- access token --------------------------------------------------------------------------------------


def test_token_is_fetched_once_cached_under_the_appid_and_reused(wx_sim, wechat, tokens) -> None:
    wechat.submit(text("one"), reference="a")
    wechat.submit(text("two"), reference="b")
    wechat.submit(image(), reference="c")

    assert paths(wx_sim) == [TOKEN_PATH, TEXT_PATH, TEXT_PATH, MEDIA_PATH]
    assert [(key, ttl) for key, _, ttl in tokens.history] == [(CACHE_KEY, 7200 - 300)]


def test_another_process_reuses_the_shared_token(wx_sim, wx_http, wechat, tokens) -> None:
    wechat.submit(text("one"), reference="a")

    adapter(wx_http, tokens).submit(text("two"), reference="b")

    assert paths(wx_sim).count(TOKEN_PATH) == 1


def test_expired_token_is_refreshed_once_and_the_check_completes(wx_sim, wechat, tokens) -> None:
    wechat.submit(text("one"), reference="a")
    wx_sim.expire_tokens()

    submission = wechat.submit(text("two sim-reject"), reference="b")

    assert paths(wx_sim) == [TOKEN_PATH, TEXT_PATH, TEXT_PATH, TOKEN_PATH, TEXT_PATH]
    assert submission.verdict is not None and submission.verdict.decision is Decision.REJECT
    assert len(tokens.history) == 2 and tokens.get(CACHE_KEY) == tokens.history[-1][1]


def test_a_token_retired_by_a_newer_one_is_40001_and_refreshed(wx_sim, clock, wx_http, wechat) -> None:
    """Another app server with its own cache fetched a token; ours retires after the grace period."""
    wechat.submit(text("one"), reference="a")
    adapter(wx_http, MemoryTokenCache()).submit(text("two"), reference="b")
    clock.advance(wx_sim.knobs.token_grace_s)

    wechat.submit(text("three"), reference="c")

    assert paths(wx_sim) == [TOKEN_PATH, TEXT_PATH, TOKEN_PATH, TEXT_PATH, TEXT_PATH, TOKEN_PATH, TEXT_PATH]


def test_token_errors_twice_in_a_row_are_permanent_after_one_refresh(tokens) -> None:
    fetched: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            fetched.append(f"tok-{len(fetched)}")
            return httpx.Response(200, json={"access_token": fetched[-1], "expires_in": 7200})
        return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})

    transport = httpx.MockTransport(handle)
    with httpx.Client(transport=transport, base_url="https://wx.test") as http, pytest.raises(VendorRejected) as info:
        adapter(http, tokens).submit(text("a red fox"), reference="a")

    assert info.value.code == "wechat_40001" and len(fetched) == 2


def test_stable_token_is_the_same_until_forced(wx_sim, wx_http) -> None:
    creds = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}

    first = wx_http.post(STABLE_TOKEN_PATH, json=creds).json()
    again = wx_http.post(STABLE_TOKEN_PATH, json=creds).json()
    forced = wx_http.post(STABLE_TOKEN_PATH, json=creds | {"force_refresh": True}).json()

    assert first["access_token"] == again["access_token"] != forced["access_token"]
    assert first["expires_in"] == 7200


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"grant_type": "client_credential", "appid": APPID, "secret": "wrong"}, 40125),
        ({"grant_type": "client_credential", "appid": "wx0000000000000000", "secret": SECRET}, 40013),
        ({"grant_type": "password", "appid": APPID, "secret": SECRET}, 40002),
        ({"grant_type": "client_credential", "secret": SECRET}, 41002),
        ({"grant_type": "client_credential", "appid": APPID}, 41004),
    ],
    ids=["secret", "appid", "grant-type", "no-appid", "no-secret"],
)
def test_sim_token_endpoint_checks_credentials(wx_http, params, errcode) -> None:
    assert wx_http.get(TOKEN_PATH, params=params).json()["errcode"] == errcode


@pytest.mark.parametrize(
    ("method", "query", "body", "errcode"),
    [
        ("POST", "", {"version": 2, "openid": OPENID, "scene": 2, "content": "x"}, 41001),
        ("POST", "?access_token=unknown", {"version": 2, "openid": OPENID, "scene": 2, "content": "x"}, 40001),
        ("POST", "?access_token=unknown", {"access_token": "x", "version": 2, "content": "x"}, 47001),
        ("POST", "", {"access_token": "x", "version": 2, "content": "x"}, 47001),
        ("GET", "?access_token=unknown", None, 43302),
    ],
    ids=["no-token", "unknown-token", "token-in-body", "token-only-in-body", "get"],
)
def test_sim_check_endpoints_demand_a_query_token_and_post(wx_http, method, query, body, errcode) -> None:
    answer = wx_http.request(method, TEXT_PATH + query, json=body).json()

    assert answer["errcode"] == errcode


def test_sim_img_sec_check_v1(wx_sim, wx_http, wechat, tokens) -> None:
    wechat.submit(text("warm up the token"), reference="a")
    token = tokens.get(CACHE_KEY)
    wx_sim.configure(max_image_bytes=100)

    def check(data: bytes) -> object:
        return wx_http.post(IMAGE_PATH, params={"access_token": token}, files={"media": ("a.png", data)}).json()

    clean, risky, large = check(b"\x89PNG clean"), check(b"\x89PNG sim-reject"), check(b"x" * 101)

    assert [a["errcode"] for a in (clean, risky, large)] == [0, 87014, 40006]  # type: ignore[index]
    assert wx_sim.calls[-1].body == {"media": "<101 bytes>"}


# --- push verification -----------------------------------------------------------------------------


def test_url_verification_get_is_answered_with_echostr(wx_sim, wechat) -> None:
    request = wx_sim.url_verification(echostr="8814259870437312")

    events, answer = wechat.parse_push(as_push(str(request.url), method="GET"))

    assert request.method == "GET" and str(request.url).startswith(PUSH_URL)
    assert (events, answer) == ([], PushAnswer(200, "8814259870437312"))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_wrong_signature_is_rejected(clock, wechat, method) -> None:
    query = signed_query(str(int(clock.now)), token="not-the-push-token") | {"echostr": "1"}

    with pytest.raises(PushRejected) as info:
        wechat.parse_push(PushRequest(method, query, {}, b"{}"))

    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_more_than_300_s_off_is_stale(wx_sim, clock, wechat, inbox, offset) -> None:
    wx_sim.configure(clock_offset_s=offset, push_delay_s=0)
    wechat.submit(image(), reference="audit-1")
    wx_sim.tick()

    with pytest.raises(PushRejected) as info:
        wechat.parse_push(as_push(inbox[0][0], inbox[0][2]))

    assert info.value.reason == "stale"


def test_a_timestamp_300_s_off_is_still_fresh(clock, wechat) -> None:
    query = signed_query(str(int(clock.now) - 300)) | {"echostr": "42"}

    assert wechat.parse_push(PushRequest("GET", query, {}, b""))[1].body == "42"


@pytest.mark.parametrize(
    ("method", "query", "body", "reason"),
    [
        ("POST", {}, b"{}", "missing_signature"),
        ("POST", {"timestamp": "1760000000", "nonce": "1"}, b"{}", "missing_signature"),
        ("POST", "signed", b"not json", "malformed"),
        ("POST", "signed", b"[1, 2]", "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "result": {"suggest": "pass"}}',
         "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "trace_id": "t", "result": {}}',
         "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "trace_id": "t", "errcode": "x"}',
         "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "errcode": -1008, "detail": []}',
         "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "trace_id": "t", '
                           b'"result": {"suggest": "maybe"}}', "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "trace_id": "t", '
                           b'"result": {"suggest": "pass"}, "detail": "none"}', "malformed"),
        ("POST", "signed", b'{"MsgType": "event", "Event": "wxa_media_check", "appid": "wx0000000000000000", '
                           b'"trace_id": "t", "result": {"suggest": "pass"}}', "wrong_appid"),
        ("POST", "signed", b'{"ToUserName": "gh_1", "Encrypt": "c2VjcmV0"}', "encrypted_unsupported"),
        ("GET", "signed", b"", "malformed"),
        ("PUT", "signed", b"{}", "malformed"),
        ("POST", "bad-timestamp", b"{}", "malformed"),
    ],
    ids=["unsigned", "no-signature", "not-json", "not-object", "no-trace-id", "no-suggest", "errcode-not-a-number",
         "failure-without-trace-id", "unknown-suggest",
         "detail-not-list", "other-appid", "encrypted", "get-without-echostr", "put", "timestamp-not-a-number"],
)  # fmt: skip
def test_unusable_pushes_are_rejected(clock, wechat, method, query, body, reason) -> None:
    if query == "signed":
        query = signed_query(str(int(clock.now)))
    elif query == "bad-timestamp":
        query = signed_query("yesterday")

    with pytest.raises(PushRejected) as info:
        wechat.parse_push(PushRequest(method, query, {}, body))

    assert info.value.reason == reason


def test_a_media_check_failure_push_is_a_failed_verdict_not_a_malformed_push(clock, wechat) -> None:
    """WeChat could not download the image: `errcode` -1008, an empty `detail`, no `result`."""
    payload = {
        "ToUserName": "gh_1", "FromUserName": OPENID, "CreateTime": int(clock.now), "MsgType": "event",
        "Event": "wxa_media_check", "appid": APPID, "trace_id": "t-1008", "version": 2,
        "errcode": -1008, "errmsg": "download media failed", "detail": [],
    }  # fmt: skip
    body = json.dumps(payload).encode()

    events, answer = wechat.parse_push(PushRequest("POST", signed_query(str(int(clock.now))), {}, body))

    assert answer == PushAnswer(200, "success")
    [(trace_id, verdict)] = events
    assert (trace_id, verdict.decision, verdict.confidence, verdict.labels) == ("t-1008", Decision.FAILED, 0.0, ())
    assert verdict.raw == payload


@pytest.mark.parametrize(
    ("extra", "decision"),
    [
        ({"errcode": 0, "result": {"suggest": "pass"}}, Decision.PASS),
        ({"errcode": -1008, "result": {"suggest": "risky", "label": "20002"}}, Decision.REJECT),
        ({"errcode": "-1008"}, Decision.FAILED),
    ],
    ids=["errcode-0", "errcode-with-result", "errcode-as-string"],
)
def test_a_push_with_a_result_is_judged_by_it_and_only_an_errcode_without_one_failed(
    clock, wechat, extra: dict[str, object], decision: Decision
) -> None:
    payload = {"MsgType": "event", "Event": "wxa_media_check", "trace_id": "t", "detail": []} | extra

    [(_, verdict)], _ = wechat.parse_push(
        PushRequest("POST", signed_query(str(int(clock.now))), {}, json.dumps(payload).encode())
    )

    assert verdict.decision is decision


def test_another_event_on_the_push_url_is_acknowledged_without_events(clock, wechat) -> None:
    body = json.dumps({"MsgType": "event", "Event": "user_enter_tempsession", "appid": APPID}).encode()

    events, answer = wechat.parse_push(PushRequest("POST", signed_query(str(int(clock.now))), {}, body))

    assert (events, answer) == ([], PushAnswer(200, "success"))


def test_push_verdict_tolerates_misspellings_and_label_types(clock, wechat) -> None:
    """`sugguest` (the docs' spelling), upper case, numeric and string labels, failed strategies."""
    payload = {
        "MsgType": "event", "Event": "wxa_media_check", "appid": APPID, "trace_id": "t-1", "version": 2,
        "result": {"sugguest": "Risky", "label": 20001},
        "detail": [
            {"strategy": "content_model", "errcode": 0, "sugguest": "risky", "label": "20001", "prob": "88"},
            {"strategy": "keyword", "errcode": 0, "suggest": "review", "label": 10001, "level": 20},
            {"strategy": "broken", "errcode": -1, "suggest": "risky", "label": 20013, "prob": 99},
            "not an entry",
        ],
    }  # fmt: skip
    query = signed_query(str(int(clock.now)))

    [(trace_id, verdict)], _ = wechat.parse_push(PushRequest("POST", query, {}, json.dumps(payload).encode()))

    assert (trace_id, verdict.decision, verdict.confidence) == ("t-1", Decision.REJECT, 0.88)
    assert verdict.labels == ("20001", "10001")


@pytest.mark.parametrize(
    ("detail", "confidence"),
    [
        ([], 1.0),
        ([{"suggest": "pass", "label": 100, "prob": 90}], 0.9),
        ([{"suggest": "pass", "label": 100, "prob": 97}, {"suggest": "pass", "label": 20002, "prob": 30}], 0.7),
        ([{"strategy": "keyword", "errcode": 0}], 1.0),
    ],
    ids=["no-detail", "normal-90", "least-sure-model", "keyword-no-hit"],
)
def test_pass_confidence_is_the_least_sure_model(clock, wechat, detail, confidence) -> None:
    payload = {"MsgType": "event", "Event": "wxa_media_check", "trace_id": "t", "result": {"suggest": "pass"}}
    body = json.dumps(payload | {"detail": detail}).encode()

    [(_, verdict)], _ = wechat.parse_push(PushRequest("POST", signed_query(str(int(clock.now))), {}, body))

    assert (verdict.decision, verdict.confidence, verdict.labels) == (Decision.PASS, confidence, ())


def test_duplicates_deliver_the_same_event_n_plus_one_times(wx_sim, clock, wechat, inbox) -> None:
    wx_sim.configure(push_duplicates=2)
    trace_id = wechat.submit(image(), reference="audit-1").platform_task_id
    clock.advance(wx_sim.knobs.push_delay_s)

    wx_sim.tick()
    events = [wechat.parse_push(as_push(url, body))[0] for url, _, body in inbox]

    assert len(inbox) == 3 and len({body for _, _, body in inbox}) == 1
    assert [[t for t, _ in e] for e in events] == [[trace_id]] * 3


def test_a_dropped_push_is_never_delivered(wx_sim, clock, wx_http, wechat, inbox) -> None:
    wx_sim.configure(push_drop_rate=1.0)
    wechat.submit(image(), reference="audit-1")
    clock.advance(wx_sim.knobs.push_delay_s)

    wx_sim.tick()
    clock.advance(3600)
    wx_sim.tick()

    assert inbox == [] and wx_sim.pushes_sent == []
    assert wx_http.get("/__sim/stats").json()["pushes"] == {"sent": 0, "pending": 0, "dropped": 1, "unrouted": 0}


def test_a_badly_signed_push_is_rejected(wx_sim, clock, wechat, inbox) -> None:
    wx_sim.configure(push_bad_signature_rate=1.0)
    wechat.submit(image(), reference="audit-1")
    clock.advance(wx_sim.knobs.push_delay_s)
    wx_sim.tick()

    with pytest.raises(PushRejected) as info:
        wechat.parse_push(as_push(inbox[0][0], inbox[0][2]))

    assert info.value.reason == "bad_signature" and wx_sim.pushes_sent[0].bad_signature


def test_push_delay_is_a_knob(wx_sim, clock, wechat, inbox) -> None:
    wx_sim.configure(push_delay_s=600)
    wechat.submit(image(), reference="audit-1")

    clock.advance(599)
    before = wx_sim.tick()
    clock.advance(1)
    after = wx_sim.tick()

    assert (before, after) == (0, 1)


def test_without_a_push_url_nothing_is_delivered(clock, inbox, tokens) -> None:
    sim = WechatSim(appid=APPID, secret=SECRET, push_token=PUSH_TOKEN, clock=clock, deliver=recorder(inbox))
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="https://wx.test") as http:
        adapter(http, tokens, clock).submit(image(), reference="a")
    clock.advance(sim.knobs.push_delay_s)

    assert sim.tick() == 0 and inbox == []
    assert sim.stats()["pushes"] == {"sent": 0, "pending": 0, "dropped": 0, "unrouted": 1}


# --- errcode classification ----------------------------------------------------------------------------

Arrange = Callable[[WechatSim], Callable[[httpx.Request], httpx.Response]]


def via_sim(**knobs: Any) -> Arrange:
    def arrange(sim: WechatSim) -> Callable[[httpx.Request], httpx.Response]:
        sim.configure(**knobs)
        return sim.handle

    return arrange


def canned(status: int = 200, body: object = None, *, token_ok: bool = True) -> Arrange:
    """The token endpoint answers normally (when `token_ok`); every other call gets this answer."""

    def arrange(sim: WechatSim) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path == TOKEN_PATH and token_ok:
                return sim.handle(request)
            if isinstance(body, bytes):
                return httpx.Response(status, content=body)
            return httpx.Response(status, json=body)

        return handle

    return arrange


CLASSIFICATION = [
    pytest.param(via_sim(failure_rate=1.0, failure_kind="busy"), {}, "t", VendorUnavailable, "wechat_-1", id="-1"),
    pytest.param(via_sim(failure_rate={TEXT_PATH: 1.0}, failure_kind="code_500"), {}, "t", VendorUnavailable,
                 "wechat_-1", id="-1-system-error"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="rate"), {}, "i", VendorUnavailable, "wechat_45009",
                 id="45009"),
    pytest.param(via_sim(), {"openid": "not-an-openid"}, "t", VendorRejected, "wechat_40003", id="40003"),
    pytest.param(canned(body={"errcode": 40129, "errmsg": "invalid scene"}), {}, "t", VendorRejected,
                 "wechat_40129", id="40129"),
    pytest.param(via_sim(openids=[OTHER_OPENID]), {}, "i", VendorRejected, "wechat_43104", id="43104"),
    pytest.param(canned(body={"errcode": 47001, "errmsg": "data format error"}), {}, "t", VendorRejected,
                 "wechat_47001", id="47001"),
    pytest.param(via_sim(), {}, "empty", VendorRejected, "wechat_44002", id="44002"),
    pytest.param(via_sim(), {}, "too-big", VendorRejected, "wechat_40006", id="40006"),
    pytest.param(via_sim(max_text_chars=5), {}, "t", VendorRejected, "wechat_45002", id="45002-unknown"),
    pytest.param(via_sim(), {"secret": "wxsec-wrong-0000000000000000000000"}, "t", VendorRejected,
                 "wechat_40125", id="token-40125"),
    pytest.param(via_sim(failure_rate={TOKEN_PATH: 1.0}), {}, "t", VendorUnavailable, "wechat_-1", id="token--1"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="http_500"), {}, "t", VendorUnavailable, "http_500",
                 id="http-500"),
    pytest.param(canned(503, b"<html>busy</html>"), {}, "i", VendorUnavailable, "http_503", id="http-503"),
    pytest.param(canned(404, b"not found"), {}, "t", VendorRejected, "http_404", id="http-404"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="transport"), {}, "t", VendorUnavailable, "transport",
                 id="transport"),
    pytest.param(canned(200, b"<html>gateway</html>"), {}, "t", VendorProtocolError, "not_json", id="not-json"),
    pytest.param(canned(body=[1, 2]), {}, "t", VendorProtocolError, "bad_answer", id="not-an-object"),
    pytest.param(canned(body={"errcode": 0, "errmsg": "ok", "trace_id": "t"}), {}, "t", VendorProtocolError,
                 "bad_result", id="no-result"),
    pytest.param(canned(body={"errcode": 0, "trace_id": "t", "result": {"suggest": "hmm"}}), {}, "t",
                 VendorProtocolError, "bad_result", id="unknown-suggest"),
    pytest.param(canned(body={"errcode": 0, "errmsg": "ok"}), {}, "i", VendorProtocolError, "bad_result",
                 id="no-trace-id"),
    pytest.param(canned(body={"errcode": 0}, token_ok=False), {}, "t", VendorProtocolError,
                 "missing_access_token", id="no-access-token"),
]  # fmt: skip

ACTS: Mapping[str, CheckItem] = {
    "t": text("a red fox"),
    "i": image(),
    "empty": text(""),
    "too-big": image("https://img.example/sim-too-big.png"),
}


@pytest.mark.parametrize(("arrange", "overrides", "act", "bucket", "code"), CLASSIFICATION)
def test_classification(arrange: Arrange, overrides, act: str, bucket: type[VendorError], code: str) -> None:
    """Each answer lands in exactly one bucket, with a stable code."""
    sim = WechatSim(appid=APPID, secret=SECRET, push_token=PUSH_TOKEN, seed=1, deliver=lambda *_: None)
    transport = httpx.MockTransport(arrange(sim))
    with httpx.Client(transport=transport, base_url="https://wx.test") as http, pytest.raises(VendorError) as info:
        adapter(http, MemoryTokenCache(), **overrides).submit(ACTS[act], reference="audit-1")

    assert type(info.value) is bucket
    assert info.value.code == code


def test_the_daily_quota_asks_for_a_longer_back_off(wx_sim, wechat) -> None:
    wx_sim.configure(failure_rate={TEXT_PATH: 1.0}, failure_kind="rate")

    with pytest.raises(VendorUnavailable) as info:
        wechat.submit(text("a red fox"), reference="audit-1")

    assert info.value.retry_after_ms == 600_000


@pytest.mark.parametrize("changes", [{"scene": 5}, {"secret": ""}, {"push_token": ""}])
def test_bad_configuration_fails_at_construction(wx_http, tokens, changes) -> None:
    with pytest.raises(ValueError):
        adapter(wx_http, tokens, **changes)


# --- admin ---------------------------------------------------------------------------------------------


def test_admin_config_stats_calls_and_reset(wx_sim, wx_http, wechat) -> None:
    wechat.submit(text("a red fox sim-reject"), reference="a")
    wechat.submit(image(), reference="b")

    stats = wx_http.get("/__sim/stats").json()
    bad = wx_http.post("/__sim/config", json={"no_such_knob": 1})
    config = wx_http.post("/__sim/config", json={"push_delay_s": 60, "openids": [OPENID]}).json()
    calls = wx_http.get("/__sim/calls").json()
    wx_http.post("/__sim/reset")

    assert stats["tokens"] == {"issued": 1, "live": 1} and stats["verdicts"] == {"risky": 1, "pass": 1}
    assert stats["pushes"]["pending"] == 1
    assert bad.status_code == 400 and config["push_delay_s"] == 60 and config["openids"] == [OPENID]
    assert [c["path"] for c in calls] == [TOKEN_PATH, TEXT_PATH, MEDIA_PATH]
    assert wx_sim.calls == [] and wx_sim.stats()["tokens"] == {"issued": 0, "live": 0}


@pytest.mark.parametrize(
    "changes",
    [{"push_drop_rate": 2}, {"failure_kind": "meteor"}, {"push_duplicates": -1}, {"pass_prob": 101},
     {"openids": ["short"]}, {"token_ttl": 1}],
)  # fmt: skip
def test_knob_values_are_checked(wx_sim, changes) -> None:
    with pytest.raises(ValueError):
        wx_sim.configure(**changes)


def test_risky_rate_makes_unmarked_content_risky(wx_sim, wechat) -> None:
    wx_sim.configure(risky_rate=1.0)

    verdict = wechat.submit(text("a red fox"), reference="a").verdict

    assert verdict is not None and (verdict.decision, verdict.confidence, verdict.labels) == (
        Decision.REJECT, 0.8, ("20012",),
    )  # fmt: skip


# --- secrets -------------------------------------------------------------------------------------------


def test_secret_and_tokens_never_in_call_log_exceptions_or_admin(wx_sim, clock, wx_http, wechat, tokens) -> None:
    """Failures of every kind, including answers that echo the credentials back, never show them."""
    failures: list[Exception] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except (VendorError, PushRejected) as exc:
            failures.append(exc)

    wechat.submit(text("a red fox"), reference="a")
    token = tokens.get(CACHE_KEY) or ""
    wx_sim.expire_tokens()
    wechat.submit(image(), reference="b")
    for kind in ("transport", "http_500", "busy"):
        wx_sim.configure(failure_rate=1.0, failure_kind=kind)
        collect(lambda: wechat.submit(text("x"), reference="c"))
    wx_sim.configure(failure_rate=0.0)
    echo = httpx.MockTransport(
        lambda r: httpx.Response(200, json={"errcode": 40003, "errmsg": f"bad {r.url.params.get('access_token')}"})
    )
    leaky = httpx.MockTransport(lambda r: httpx.Response(200, text=f"oops {r.url}"))
    for transport in (echo, leaky):
        with httpx.Client(transport=transport, base_url="https://wx.test") as bad:
            collect(lambda: adapter(bad, tokens).submit(text("x"), reference="d"))
    secret_echo = httpx.MockTransport(lambda r: httpx.Response(200, json={"errcode": 40125, "errmsg": str(r.url)}))
    with httpx.Client(transport=secret_echo, base_url="https://wx.test") as bad:
        collect(lambda: adapter(bad, MemoryTokenCache()).submit(text("x"), reference="e"))

    issued = [t for _, t, _ in tokens.history]
    assert len(failures) == 6 and len(issued) == 2 and token in issued
    for exc in failures:
        text_ = f"{exc} {exc!r} {getattr(exc, 'detail', '')} {exc.args}"
        assert SECRET not in text_ and not any(t in text_ for t in issued)
    admin = "".join(wx_http.get(f"/__sim/{page}").text for page in ("calls", "config", "stats"))
    log = repr(wx_sim.calls) + repr(wechat) + repr(wx_sim)
    assert SECRET not in admin + log and not any(t in admin + log for t in issued)
    assert PUSH_TOKEN not in admin + log + repr(wx_sim.pushes_sent)


# --- loopback: uvicorn serving the sim, a real push receiver -------------------------------------------


class _Receiver(ThreadingHTTPServer):
    received: queue.Queue[tuple[str, str, dict[str, str], bytes]]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.put(("POST", self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"success")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A tiny push receiver on a free 127.0.0.1 port, in a thread."""
    server = _Receiver(("127.0.0.1", 0), _ReceiverHandler)
    server.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def served_sim(clock, receiver: _Receiver) -> Iterator[tuple[WechatSim, str]]:
    """A WechatSim with the default (real HTTP) delivery behind uvicorn on a free 127.0.0.1 port."""
    push_url = f"http://127.0.0.1:{receiver.server_address[1]}/v1/callbacks/moderation/wechat"
    sim = WechatSim(appid=APPID, secret=SECRET, push_token=PUSH_TOKEN, push_url=push_url, clock=clock, seed=3)
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


def test_text_image_and_a_real_push_over_loopback(served_sim, receiver, clock, tokens) -> None:
    """The unchanged adapter checks a text and an image over HTTP; the ticker delivers a real push to
    a receiver on another port, which parse_push verifies."""
    sim, base = served_sim
    with httpx.Client(base_url=base, timeout=10) as http:
        wechat = adapter(http, tokens, clock)

        checked = wechat.submit(text("a red fox sim-review"), reference="a")
        submitted = wechat.submit(image("https://img.example/sim-reject.png"), reference="b")
        clock.advance(sim.knobs.push_delay_s)
        sim.start_ticker(interval_s=0.05)
        method, target, headers, body = receiver.received.get(timeout=10)

    events, answer = wechat.parse_push(PushRequest(method, dict(httpx.URL(target).params), headers, body))

    assert checked.verdict is not None and checked.verdict.decision is Decision.REVIEW
    assert submitted.verdict is None
    assert httpx.URL(target).path == "/v1/callbacks/moderation/wechat"
    assert [(t, v.decision, v.labels) for t, v in events] == [(submitted.platform_task_id, Decision.REJECT, ("20002",))]
    assert answer == PushAnswer(200, "success")
    assert [c.path for c in sim.calls] == [TOKEN_PATH, TEXT_PATH, MEDIA_PATH]
