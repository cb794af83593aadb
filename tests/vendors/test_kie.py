"""KieClient against KieSim over httpx.MockTransport (time moves by the fake clock), the callback
verifier against the simulator's callbacks, and both served for real on loopback."""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support import SIM_MEDIA_SCALE, wait_for
from vendors.base import (
    Done,
    Failed,
    Running,
    VendorBusy,
    VendorError,
    VendorExpired,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
)
from vendors.kie import (
    CREATE_PATH,
    RECORD_PATH,
    CallbackRejected,
    KieClient,
    VideoRequest,
    callback_signature,
    verify_callback,
)
from vendors.sim.common import asgi_app
from vendors.sim.kie import KieSim

KEY = "kie-7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
HMAC_KEY = "whk-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
CALLBACK_URL = "https://genq.example/kie/callback"
UNKNOWN_TASK = "task_sora-2-text-to-video_1700000000000"
IMAGE_URL = "https://img.example/cat.png"
REQUEST = VideoRequest(model="sora-2", resolution="720p", duration=10, prompt="a red fox in the snow")
Inbox = list[tuple[str, dict[str, str], bytes]]
Handler = Callable[[httpx.Request], httpx.Response]
Arrange = Callable[[KieSim], Handler]
Act = Callable[[httpx.Client], object]


@pytest.fixture
def inbox() -> Inbox:
    """Every callback the simulator delivered, as (url, headers, body)."""
    return []


def recorder(inbox: Inbox) -> Callable[[str, Mapping[str, str], bytes], None]:
    """A `deliver` that keeps each callback instead of sending it."""

    def deliver(url: str, headers: Mapping[str, str], body: bytes) -> None:
        inbox.append((url, dict(headers), body))

    return deliver


@pytest.fixture
def kie_sim(clock, inbox: Inbox) -> KieSim:
    sim = KieSim(api_keys=[KEY], hmac_key=HMAC_KEY, clock=clock, seed=7, deliver=recorder(inbox))
    sim.configure(media_scale=SIM_MEDIA_SCALE)
    return sim


@pytest.fixture
def kie_http(kie_sim: KieSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(kie_sim.handle), base_url="http://kie.sim", timeout=5) as http:
        yield http


@pytest.fixture
def kie(kie_http: httpx.Client) -> KieClient:
    return KieClient(kie_http, api_key=KEY, callback_url=CALLBACK_URL)


def finish(sim: KieSim, clock: Any) -> None:
    """Move the fake clock past waiting, queuing and generating (default durations)."""
    clock.advance(sim.knobs.waiting_s + sim.knobs.queuing_s + sim.knobs.generating_s)


def boxes(data: bytes) -> list[str]:
    """The top-level ISO-BMFF box types; their sizes must tile the file exactly."""
    names, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        assert size >= 8, f"bad box size {size} at {at}"
        names.append(data[at + 4 : at + 8].decode("latin-1"))
        at += size
    assert at == len(data)
    return names


def create(http: httpx.Client, key: str = KEY, **body: Any) -> dict[str, Any]:
    answer = http.post(CREATE_PATH, json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    envelope: dict[str, Any] = answer.json()
    return envelope


# --- the happy path ---------------------------------------------------------------------------------

VARIANTS = [
    pytest.param("sora-2", "720p", 10, None, id="sora-2-720p-10s"),
    pytest.param("sora-2", "720p", 15, None, id="sora-2-720p-15s"),
    pytest.param("sora-2-pro", "720p", 10, "standard", id="pro-720p-10s"),
    pytest.param("sora-2-pro", "720p", 15, "standard", id="pro-720p-15s"),
    pytest.param("sora-2-pro", "1080p", 10, "high", id="pro-1080p-10s"),
    pytest.param("sora-2-pro", "1080p", 15, "high", id="pro-1080p-15s"),
]


@pytest.mark.parametrize("image_url", [None, IMAGE_URL], ids=["text", "image"])
@pytest.mark.parametrize(("model", "resolution", "duration", "size"), VARIANTS)
def test_every_variant_reaches_done_with_one_valid_mp4(
    kie_sim, clock, kie_http, kie, model, resolution, duration, size, image_url
) -> None:
    request = VideoRequest(model, resolution, duration, "a red fox in the snow", image_url=image_url)
    kind = "image-to-video" if image_url else "text-to-video"

    task_id = kie.submit(request, idempotency_key="job-1")
    finish(kie_sim, clock)
    outcome = kie.poll(task_id)

    sent = next(call for call in kie_sim.calls if call.path == CREATE_PATH).body
    assert sent["model"] == f"{model}-{kind}"
    assert sent["input"]["n_frames"] == str(duration)
    assert sent["input"].get("size") == size and ("size" in sent["input"]) == (size is not None)
    assert sent["input"].get("image_urls") == ([image_url] if image_url else None)
    assert re.fullmatch(rf"task_{model}-{kind}_\d{{13}}", task_id)
    assert isinstance(outcome, Done) and len(outcome.files) == 1
    assert (outcome.files[0].content_type, outcome.files[0].ext) == ("video/mp4", "mp4")
    video = kie_http.get(outcome.files[0].url)
    assert (video.status_code, video.headers["content-type"]) == (200, "video/mp4")
    assert boxes(video.content)[0] == "ftyp"
    assert {"moov", "mdat"} <= set(boxes(video.content))


def test_states_advance_waiting_queuing_generating(kie_sim, clock, kie) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")
    seen = []

    for step in (0, kie_sim.knobs.waiting_s, kie_sim.knobs.queuing_s):
        clock.advance(step)
        seen.append(kie.poll(task_id))

    assert seen == [Running("waiting"), Running("queuing"), Running("generating")]


def test_durations_are_configurable_per_variant(kie_sim, clock, kie) -> None:
    """`*/high/*` overrides 1080p only; the 720p task finishes on the default schedule."""
    kie_sim.configure(durations={"*/high/*": {"generating_s": 600}})
    hd = kie.submit(VideoRequest("sora-2-pro", "1080p", 15, "a fox"), idempotency_key="job-1")
    sd = kie.submit(VideoRequest("sora-2-pro", "720p", 15, "a fox"), idempotency_key="job-2")

    finish(kie_sim, clock)
    early = (kie.poll(hd), kie.poll(sd))
    clock.advance(600)

    assert early[0] == Running("generating") and isinstance(early[1], Done)
    assert isinstance(kie.poll(hd), Done)


def test_wire_carries_bearer_job_id_and_callback_url(kie_sim, kie) -> None:
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return kie_sim.handle(request)

    with httpx.Client(transport=httpx.MockTransport(spy), base_url="http://kie.sim") as http:
        task_id = KieClient(http, api_key=KEY, callback_url=CALLBACK_URL).submit(REQUEST, idempotency_key="job-1")
        KieClient(http, api_key=KEY).poll(task_id)

    body = json.loads(seen[0].content)
    assert body == {
        "model": "sora-2-text-to-video",
        "callBackUrl": CALLBACK_URL,
        "input": {"prompt": "a red fox in the snow", "aspect_ratio": "landscape", "n_frames": "10"},
    }
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert seen[0].headers["X-Request-Id"] == "job-1"
    assert (seen[1].method, seen[1].url.path, seen[1].url.params["taskId"]) == ("GET", RECORD_PATH, task_id)


def test_record_info_has_the_documented_shape(kie_sim, clock, kie, kie_http) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")
    finish(kie_sim, clock)

    answer = kie_http.get(RECORD_PATH, params={"taskId": task_id}, headers={"Authorization": f"Bearer {KEY}"})

    envelope = answer.json()
    data = envelope["data"]
    assert (envelope["code"], envelope["msg"]) == (200, "success")
    assert set(data) == {
        "taskId", "model", "state", "param", "resultJson", "failCode", "failMsg", "costTime",
        "completeTime", "createTime", "updateTime",
    }  # fmt: skip
    assert json.loads(data["param"])["model"] == "sora-2-text-to-video"
    assert isinstance(data["resultJson"], str) and "resultUrls" in json.loads(data["resultJson"])
    knobs = kie_sim.knobs
    expected_ms = round(1000 * (knobs.waiting_s + knobs.queuing_s + knobs.generating_s))
    assert data["completeTime"] - data["createTime"] == data["costTime"] == expected_ms


# --- what cannot be asked for ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        VideoRequest("sora-2", "1080p", 10, "a fox"),
        VideoRequest("sora-2-pro", "4k", 10, "a fox"),
        VideoRequest("sora-2", "720p", 12, "a fox"),
        VideoRequest("sora-3", "720p", 10, "a fox"),
    ],
    ids=["sora-2-1080p", "4k", "12s", "sora-3"],
)
def test_unsupported_combination_is_rejected_by_the_client_before_any_call(kie_sim, kie, request_) -> None:
    """KIE's wire has no way to say 1080p for sora-2 (`size` is pro-only): sending it as 720p would
    silently downgrade a paid job, so the client refuses it."""
    with pytest.raises(VendorRejected) as info:
        kie.submit(request_, idempotency_key="job-1")

    assert info.value.code == "unsupported_request"
    assert kie_sim.calls == []


def test_submit_takes_only_a_video_request(kie) -> None:
    with pytest.raises(TypeError):
        kie.submit({"model": "sora-2"}, idempotency_key="job-1")


TEXT = "sora-2-text-to-video"
PRO_TEXT = "sora-2-pro-text-to-video"
PRO_IMAGE = "sora-2-pro-image-to-video"
OK_INPUT = {"prompt": "a fox", "n_frames": "10"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": TEXT, "input": {**OK_INPUT, "size": "high"}}, "size"),
        ({"model": PRO_TEXT, "input": {**OK_INPUT, "size": "ultra"}}, "size"),
        ({"model": TEXT, "input": {**OK_INPUT, "n_frames": "12"}}, "n_frames"),
        ({"model": TEXT, "input": {**OK_INPUT, "n_frames": 10}}, "n_frames"),
        ({"model": TEXT, "input": {"n_frames": "10"}}, "prompt"),
        ({"model": TEXT, "input": {**OK_INPUT, "prompt": "  "}}, "prompt"),
        ({"model": PRO_IMAGE, "input": OK_INPUT}, "image_urls"),
        ({"model": PRO_IMAGE, "input": {**OK_INPUT, "image_urls": [IMAGE_URL, IMAGE_URL]}}, "image_urls"),
        ({"model": TEXT, "input": {**OK_INPUT, "image_urls": [IMAGE_URL]}}, "image_urls"),
        ({"model": TEXT, "input": {**OK_INPUT, "aspect_ratio": "square"}}, "aspect_ratio"),
        ({"model": "sora-2-characters", "input": OK_INPUT}, "model"),
        ({"model": TEXT}, "input"),
        ({"model": TEXT, "input": OK_INPUT, "callBackUrl": "ftp://x"}, "callBackUrl"),
    ],
    ids=[
        "size-on-sora-2", "size-value", "n_frames-value", "n_frames-int", "no-prompt", "blank-prompt",
        "no-image", "two-images", "image-on-text", "aspect", "model", "no-input", "callback-url",
    ],
)  # fmt: skip
def test_sim_validation_answers_422_naming_the_field(kie_sim, kie_http, body, field) -> None:
    envelope = create(kie_http, **body)

    assert envelope["code"] == 422
    assert envelope["msg"].startswith(f"{field}:")
    assert kie_sim.unfinished(KEY) == 0


def test_sim_accepts_pro_without_size_and_a_sora_2_body_without_size(kie_http) -> None:
    assert create(kie_http, model=PRO_TEXT, input=OK_INPUT)["code"] == 200
    assert create(kie_http, model=TEXT, input=OK_INPUT)["code"] == 200


def test_sim_accepts_a_create_task_without_n_frames_as_a_ten_second_clip(kie_sim, clock, kie_http, kie) -> None:
    """`n_frames` is optional at KIE: left out, the clip has KIE's default length, 10 s."""
    envelope = create(kie_http, model=TEXT, input={"prompt": "a fox"})
    finish(kie_sim, clock)
    outcome = kie.poll(envelope["data"]["taskId"])

    assert envelope["code"] == 200
    assert isinstance(outcome, Done)
    video = kie_http.get(outcome.files[0].url).content
    assert mp4_seconds(video) == pytest.approx(10 * SIM_MEDIA_SCALE, abs=0.2)


def mp4_seconds(data: bytes) -> float:
    """The movie's length from its `mvhd` box (version 0: 32-bit timescale and duration)."""
    at = data.index(b"mvhd") + 4
    timescale, duration = (int.from_bytes(data[at + n : at + n + 4], "big") for n in (12, 16))
    return duration / timescale


def test_missing_or_wrong_key_gets_the_documented_401_body(kie_http) -> None:
    without = kie_http.post(CREATE_PATH, json={"model": TEXT, "input": OK_INPUT}).json()
    wrong = create(kie_http, key="kie-wrong", model=TEXT, input=OK_INPUT)

    assert without == wrong == {"code": 401, "msg": "You do not have access permissions"}


# --- classification: one table, one test ------------------------------------------------------------


def via_sim(**knobs: object) -> Arrange:
    def arrange(sim: KieSim) -> Handler:
        sim.configure(**knobs)
        return sim.handle

    return arrange


def canned(
    code: int | None = None,
    *,
    msg: str | None = "CANNED",
    message: str | None = None,
    status: int = 200,
    body: bytes | None = None,
    data: object = None,
) -> Arrange:
    """A fixed answer for what the simulator cannot produce through this client; `msg` None leaves
    it out, `message` is KIE's createTask / recordInfo spelling of it."""
    texts = {name: text for name, text in (("msg", msg), ("message", message)) if text is not None}
    content = body if body is not None else json.dumps({"code": code, **texts, "data": data}).encode()
    return lambda _sim: lambda _request: httpx.Response(status, content=content)


def submit(http: httpx.Client, request: VideoRequest = REQUEST) -> object:
    return KieClient(http, api_key=KEY).submit(request, idempotency_key="job-1")


def submit_square(http: httpx.Client) -> object:
    return submit(http, VideoRequest("sora-2", "720p", 10, "a fox", aspect_ratio="square"))


def submit_with_other_key(http: httpx.Client) -> object:
    return KieClient(http, api_key="kie-00000000000000000000000000000000").submit(REQUEST, idempotency_key="job-1")


def poll_unknown(http: httpx.Client) -> object:
    return KieClient(http, api_key=KEY).poll(UNKNOWN_TASK)


def success(result_json: object) -> dict[str, object]:
    return {"taskId": UNKNOWN_TASK, "state": "success", "resultJson": result_json}


CLASSIFICATION = [
    pytest.param(via_sim(), submit_with_other_key, VendorRejected, "kie_401", id="401"),
    pytest.param(via_sim(credit_balance=0), submit, VendorRejected, "kie_402", id="402"),
    pytest.param(via_sim(), submit_square, VendorRejected, "kie_422", id="422"),
    pytest.param(via_sim(rate_limit=0), submit, VendorBusy, "kie_429", id="429"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="rate"), poll_unknown, VendorBusy, "kie_429",
                 id="429-injected"),
    pytest.param(via_sim(maintenance=True), submit, VendorUnavailable, "kie_455", id="455"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="code_500"), submit, VendorUnavailable, "kie_500", id="500"),
    pytest.param(canned(501), submit, VendorRejected, "kie_501", id="501"),
    pytest.param(canned(505), submit, VendorRejected, "kie_505", id="505"),
    pytest.param(canned(418), submit, VendorRejected, "kie_418", id="unlisted-code"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="http_500"), submit, VendorUnavailable, "http_500",
                 id="http-500"),
    pytest.param(canned(status=503, body=b"<html>busy</html>"), poll_unknown, VendorUnavailable, "http_503",
                 id="http-503"),
    pytest.param(canned(status=429, body=b"slow down"), submit, VendorBusy, "http_429", id="http-429"),
    pytest.param(canned(status=404, body=b"not found"), poll_unknown, VendorRejected, "http_404", id="http-404"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="transport"), submit, VendorUnavailable, "transport",
                 id="transport"),
    pytest.param(via_sim(), poll_unknown, VendorExpired, "kie_404", id="404-recordInfo"),
    pytest.param(canned(404), submit, VendorRejected, "kie_404", id="404-createTask"),
    pytest.param(via_sim(concurrency_limit=0), submit, VendorBusy, "kie_409", id="queue-full"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="busy"), poll_unknown, VendorBusy, "kie_409",
                 id="queue-full-injected"),
    pytest.param(canned(503, msg="Queue full, retry later"), submit, VendorBusy, "kie_503", id="queue-full-msg"),
    pytest.param(canned(503, msg=None, message="Queue full, retry later"), submit, VendorBusy, "kie_503",
                 id="queue-full-message"),
    pytest.param(canned(503, msg="", message="Queue full, retry later"), poll_unknown, VendorBusy, "kie_503",
                 id="queue-full-message-empty-msg"),
    pytest.param(canned(body=b"<html>bad gateway</html>"), submit, VendorProtocolError, "not_json", id="not-json"),
    pytest.param(canned(body=b'{"status": "ok"}'), submit, VendorProtocolError, "bad_envelope", id="no-envelope"),
    pytest.param(canned(200, data={"id": "x"}), submit, VendorProtocolError, "missing_taskId", id="no-taskId"),
    pytest.param(canned(200, data={"state": "paused"}), poll_unknown, VendorProtocolError, "bad_state",
                 id="bad-state"),
    pytest.param(canned(200, data=success("{nope")), poll_unknown, VendorProtocolError, "bad_resultJson",
                 id="bad-resultJson"),
    pytest.param(canned(200, data=success('{"resultUrls": []}')), poll_unknown, VendorProtocolError,
                 "missing_resultUrls", id="no-resultUrls"),
]  # fmt: skip


@pytest.mark.parametrize(("arrange", "act", "bucket", "code"), CLASSIFICATION)
def test_classification(arrange: Arrange, act: Act, bucket: type[VendorError], code: str) -> None:
    """Each vendor answer lands in exactly one bucket, with a stable code."""
    transport = httpx.MockTransport(arrange(KieSim(api_keys=[KEY], hmac_key=HMAC_KEY, seed=1)))
    with httpx.Client(transport=transport, base_url="http://kie.sim") as http, pytest.raises(VendorError) as info:
        act(http)

    assert type(info.value) is bucket
    assert info.value.code == code


@pytest.mark.parametrize(
    ("texts", "detail"),
    [
        ({"message": "prompt violates the content policy"}, "prompt violates the content policy"),
        ({"msg": None, "message": "prompt violates the content policy"}, "prompt violates the content policy"),
        ({"msg": "failed", "message": "prompt violates the content policy"},
         "failed; prompt violates the content policy"),
        ({"msg": "prompt violates the content policy"}, "prompt violates the content policy"),
    ],
    ids=["message", "msg-null", "both", "msg"],
)  # fmt: skip
def test_a_rejections_text_in_message_or_msg_reaches_the_error(texts: dict[str, str | None], detail: str) -> None:
    """createTask / recordInfo say `message`, callbacks `msg`: either becomes the job's error text."""
    answer = json.dumps({"code": 422, **texts, "data": None}).encode()
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=answer))
    with httpx.Client(transport=transport, base_url="http://kie.sim") as http, pytest.raises(VendorRejected) as info:
        submit(http)

    assert (info.value.code, info.value.detail) == ("kie_422", detail)
    assert str(info.value) == f"kie: kie_422: {detail}"


def test_maintenance_asks_for_a_longer_back_off() -> None:
    sim = KieSim(api_keys=[KEY], hmac_key=None)
    sim.configure(maintenance=True)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://kie.sim") as http:
        with pytest.raises(VendorUnavailable) as maintenance:
            submit(http)
        sim.configure(maintenance=False, rate_limit=0)
        with pytest.raises(VendorBusy) as rate:
            submit(http)

    assert maintenance.value.retry_after_ms == 60_000
    assert rate.value.retry_after_ms is None


def test_http_429_is_back_pressure_carrying_the_retry_after_hint() -> None:
    answer = httpx.Response(429, headers={"Retry-After": "3"}, text="slow down")
    with (
        httpx.Client(transport=httpx.MockTransport(lambda _: answer), base_url="http://kie.sim") as http,
        pytest.raises(VendorBusy) as info,
    ):
        submit(http)

    assert info.value.retry_after_ms == 3000


# --- failed, expired, forced and cancelled tasks -----------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "knobs", "expected"),
    [
        ("sim-fail please", {}, Failed("kie_501", "Generation failed")),
        ("a red fox", {"job_fail_rate": 1.0}, Failed("kie_501", "Generation failed")),
        ("sim-fail", {"fail_code": "content_policy", "fail_msg": "flagged"}, Failed("kie_content_policy", "flagged")),
    ],
    ids=["fail-marker", "fail-rate", "fail-code-knob"],
)
def test_failed_task_is_a_failed_outcome(kie_sim, clock, kie, prompt, knobs, expected) -> None:
    kie_sim.configure(**knobs)
    task_id = kie.submit(VideoRequest("sora-2", "720p", 10, prompt), idempotency_key="job-1")
    finish(kie_sim, clock)

    assert kie.poll(task_id) == expected


def test_fail_without_a_fail_code_is_a_generic_failure() -> None:
    data = {"taskId": UNKNOWN_TASK, "state": "fail", "failCode": "", "failMsg": "something broke"}
    answer = httpx.Response(200, json={"code": 200, "msg": "success", "data": data})
    with httpx.Client(transport=httpx.MockTransport(lambda _: answer), base_url="http://kie.sim") as http:
        outcome = poll_unknown(http)

    assert outcome == Failed("vendor_task_failed", "something broke")


def test_outputs_of_an_unfinished_task_is_rejected_not_finished(kie) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")

    with pytest.raises(VendorRejected) as info:
        kie.outputs(task_id)

    assert (info.value.code, info.value.detail) == ("not_finished", "waiting")


def test_outputs_are_asked_afresh(kie_sim, clock, kie) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")
    finish(kie_sim, clock)
    before = len(kie_sim.calls)

    files = kie.outputs(task_id)

    assert len(files) == 1 and "Expires=" in files[0].url and "Signature=" in files[0].url
    assert kie_sim.calls[before].path == RECORD_PATH


def test_outputs_of_a_failed_task_is_rejected_with_its_code(kie_sim, clock, kie) -> None:
    task_id = kie.submit(VideoRequest("sora-2", "720p", 10, "sim-fail"), idempotency_key="job-1")
    finish(kie_sim, clock)

    with pytest.raises(VendorRejected) as info:
        kie.outputs(task_id)

    assert info.value.code == "kie_501"


def test_cancel_is_a_no_op_that_calls_nobody(kie_sim, clock, kie) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")
    before = len(kie_sim.calls)

    kie.cancel(task_id)
    finish(kie_sim, clock)

    assert len(kie_sim.calls) == before
    assert isinstance(kie.poll(task_id), Done)


@pytest.mark.parametrize(("kind", "expected"), [("complete", Done), ("fail", Failed)])
def test_forced_transition_through_http(kie_http, kie, kind, expected) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")

    answer = kie_http.post(f"/__sim/jobs/{task_id}/{kind}")

    assert answer.status_code == 200
    assert isinstance(kie.poll(task_id), expected)


def test_forced_expiry_through_http_and_unknown_force_is_404(kie_http, kie) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")

    kie_http.post(f"/__sim/jobs/{task_id}/expire")

    with pytest.raises(VendorExpired):
        kie.poll(task_id)
    assert kie_http.post(f"/__sim/jobs/{UNKNOWN_TASK}/complete").status_code == 404


def test_task_record_past_its_retention_is_expired(kie_sim, clock, kie) -> None:
    kie_sim.configure(job_expiry_s=3600)
    task_id = kie.submit(REQUEST, idempotency_key="job-1")
    finish(kie_sim, clock)
    assert isinstance(kie.poll(task_id), Done)

    clock.advance(3600)

    with pytest.raises(VendorExpired) as info:
        kie.poll(task_id)
    assert info.value.code == "kie_404"


def test_result_url_expires_and_honours_range(kie_sim, clock, kie_http, kie) -> None:
    kie_sim.configure(result_url_ttl_s=60)
    task_id = kie.submit(REQUEST, idempotency_key="job-1")
    finish(kie_sim, clock)
    (file,) = kie.outputs(task_id)

    part = kie_http.get(file.url, headers={"Range": "bytes=4-7"})
    tampered = kie_http.get(file.url.replace("0.mp4", "1.mp4"))
    clock.advance(61)
    late = kie_http.get(file.url)

    assert (part.status_code, part.content) == (206, b"ftyp")
    assert tampered.status_code == 404
    assert late.status_code == 403


def test_task_ids_are_unique_within_one_millisecond(clock, kie) -> None:
    ids = [kie.submit(REQUEST, idempotency_key=f"job-{i}") for i in range(3)]

    assert len(set(ids)) == 3
    assert ids[0] == f"task_sora-2-text-to-video_{round(clock.now * 1000)}"


# --- callbacks --------------------------------------------------------------------------------------


def finished_task(kie_sim: KieSim, clock: Any, kie: KieClient, prompt: str = "a red fox") -> str:
    task_id = kie.submit(VideoRequest("sora-2", "720p", 10, prompt), idempotency_key="job-1")
    finish(kie_sim, clock)
    return task_id


def test_callback_verifies_and_names_the_task(kie_sim, clock, kie, inbox) -> None:
    task_id = finished_task(kie_sim, clock, kie)

    delivered = kie_sim.tick()

    assert delivered == len(inbox) == 1
    url, headers, body = inbox[0]
    assert url == CALLBACK_URL
    assert verify_callback(headers, body, hmac_key=HMAC_KEY, now=clock.now) == task_id
    payload = json.loads(body)
    assert (payload["code"], payload["data"]["state"]) == (200, "success")
    assert json.loads(payload["data"]["resultJson"])["resultUrls"][0].startswith("http://kie.sim/__sim/files/")
    assert {"consumeCredits", "remainedCredits", "param", "failCode"} <= set(payload["data"])


def test_callback_of_a_failed_task_says_fail(kie_sim, clock, kie, inbox) -> None:
    finished_task(kie_sim, clock, kie, prompt="sim-fail")

    kie_sim.tick()

    payload = json.loads(inbox[0][2])
    assert (payload["code"], payload["data"]["state"], payload["data"]["failCode"]) == (501, "fail", "501")


def test_callback_is_sent_once_only_when_finished_and_only_with_a_url(kie_sim, clock, kie_http, inbox) -> None:
    with_url = KieClient(kie_http, api_key=KEY, callback_url=CALLBACK_URL)
    with_url.submit(REQUEST, idempotency_key="job-1")
    KieClient(kie_http, api_key=KEY).submit(REQUEST, idempotency_key="job-2")

    early = kie_sim.tick()
    finish(kie_sim, clock)
    sent = kie_sim.tick() + kie_sim.tick()

    assert (early, sent, len(inbox)) == (0, 1, 1)


def test_forced_completion_triggers_the_callback(kie_sim, kie, kie_http, inbox) -> None:
    task_id = kie.submit(REQUEST, idempotency_key="job-1")

    kie_http.post(f"/__sim/jobs/{task_id}/complete")
    kie_sim.tick()

    assert json.loads(inbox[0][2])["data"]["taskId"] == task_id


def test_callback_delay(kie_sim, clock, kie, inbox) -> None:
    kie_sim.configure(callback_delay_s=30)
    finished_task(kie_sim, clock, kie)

    on_time = kie_sim.tick()
    clock.advance(30)
    late = kie_sim.tick()

    assert (on_time, late) == (0, 1)


def test_bad_signature_is_rejected(kie_sim, clock, kie, inbox) -> None:
    kie_sim.configure(callback_bad_signature_rate=1.0)
    finished_task(kie_sim, clock, kie)
    kie_sim.tick()
    _, headers, body = inbox[0]

    with pytest.raises(CallbackRejected) as info:
        verify_callback(headers, body, hmac_key=HMAC_KEY, now=clock.now)

    assert info.value.reason == "bad_signature"
    assert kie_sim.callbacks_sent[0].bad_signature


def test_timestamp_six_minutes_old_is_stale(kie_sim, clock, kie, inbox) -> None:
    kie_sim.configure(clock_offset_s=-360)
    finished_task(kie_sim, clock, kie)
    kie_sim.tick()
    _, headers, body = inbox[0]

    with pytest.raises(CallbackRejected) as info:
        verify_callback(headers, body, hmac_key=HMAC_KEY, now=clock.now)

    assert info.value.reason == "stale_timestamp"
    assert verify_callback(headers, body, hmac_key=HMAC_KEY, now=clock.now - 360)


def test_callback_without_hmac_headers_is_missing_signature(clock, inbox) -> None:
    sim = KieSim(api_keys=[KEY], hmac_key=None, clock=clock, deliver=recorder(inbox))
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://kie.sim") as http:
        finished_task(sim, clock, KieClient(http, api_key=KEY, callback_url=CALLBACK_URL))
    sim.tick()
    _, headers, body = inbox[0]

    with pytest.raises(CallbackRejected) as info:
        verify_callback(headers, body, hmac_key=HMAC_KEY, now=clock.now)

    assert "X-Webhook-Signature" not in headers
    assert info.value.reason == "missing_signature"


def test_duplicates_deliver_the_same_body_n_plus_one_times(kie_sim, clock, kie, inbox) -> None:
    kie_sim.configure(callback_duplicates=2)
    task_id = finished_task(kie_sim, clock, kie)

    kie_sim.tick()

    assert len(inbox) == 3 and len({body for _, _, body in inbox}) == 1
    assert {verify_callback(h, b, hmac_key=HMAC_KEY, now=clock.now) for _, h, b in inbox} == {task_id}


def test_dropped_callback_is_never_delivered(kie_sim, clock, kie, kie_http, inbox) -> None:
    kie_sim.configure(callback_drop_rate=1.0)
    finished_task(kie_sim, clock, kie)

    kie_sim.tick()
    clock.advance(3600)
    kie_sim.tick()

    assert inbox == [] and kie_sim.callbacks_sent == []
    assert kie_http.get("/__sim/stats").json()["callbacks"] == {"sent": 0, "pending": 0, "dropped": 1}


def test_task_id_spelt_task_id_is_accepted() -> None:
    body = json.dumps({"code": 200, "msg": "success", "data": {"task_id": "task_x_1", "state": "success"}}).encode()
    headers = {
        "x-webhook-timestamp": "1760000000",
        "x-webhook-signature": callback_signature("task_x_1", "1760000000", hmac_key=HMAC_KEY),
    }

    assert verify_callback(headers, body, hmac_key=HMAC_KEY, now=1_760_000_100) == "task_x_1"


def test_callback_signature_matches_a_known_vector() -> None:
    """base64(HMAC-SHA256("secret", "task_sora-2-text-to-video_1760000000000.1760000000"))."""
    signature = callback_signature("task_sora-2-text-to-video_1760000000000", "1760000000", hmac_key="secret")

    assert signature == "m1YOie3TEuuO4XbnKX1m7ScIFjNYc3NGOHpupquhGoA="


@pytest.mark.parametrize(
    ("body", "timestamp"),
    [
        (b"not json", "1760000000"),
        (b'{"code": 200, "data": {"state": "success"}}', "1760000000"),
        (b'{"code": 200, "data": {"taskId": "task_x_1"}}', "yesterday"),
    ],
    ids=["not-json", "no-task-id", "bad-timestamp"],
)
def test_malformed_callback(body, timestamp) -> None:
    headers = {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": "c2ln"}

    with pytest.raises(CallbackRejected) as info:
        verify_callback(headers, body, hmac_key=HMAC_KEY, now=1_760_000_000)

    assert info.value.reason == "malformed"


# --- limits -----------------------------------------------------------------------------------------


def test_rate_limit_is_429_and_frees_after_the_window(kie_sim, clock, kie) -> None:
    kie_sim.configure(rate_limit=2, rate_window_s=10)
    kie.submit(REQUEST, idempotency_key="job-1")
    kie.submit(REQUEST, idempotency_key="job-2")

    with pytest.raises(VendorBusy) as info:
        kie.submit(REQUEST, idempotency_key="job-3")
    clock.advance(10)
    kie.submit(REQUEST, idempotency_key="job-3")

    assert info.value.code == "kie_429"


def test_concurrency_cap_is_back_pressure_and_frees_on_finish(kie_sim, kie) -> None:
    """Cap 2: the third submit is VendorBusy; once one finishes a new submit is accepted."""
    kie_sim.configure(concurrency_limit=2)
    first = kie.submit(REQUEST, idempotency_key="job-1")
    kie.submit(REQUEST, idempotency_key="job-2")

    with pytest.raises(VendorBusy) as info:
        kie.submit(REQUEST, idempotency_key="job-3")
    kie_sim.force(first, "complete")
    kie.submit(REQUEST, idempotency_key="job-3")

    assert (info.value.code, info.value.detail) == ("kie_409", "queue full")
    assert kie_sim.max_concurrent(KEY) == 2


def test_max_concurrent_is_exact_without_polling(kie_sim, clock, kie) -> None:
    """Nobody polls, yet a task that ended before the next began is not counted as overlapping."""
    kie.submit(REQUEST, idempotency_key="job-1")
    finish(kie_sim, clock)
    kie.submit(REQUEST, idempotency_key="job-2")
    kie.submit(REQUEST, idempotency_key="job-3")
    clock.advance(1000)

    assert kie_sim.max_concurrent(KEY) == 2
    assert kie_sim.unfinished(KEY) == 0


def test_credit_balance_runs_out(kie_sim, kie) -> None:
    kie_sim.configure(credit_balance=30, credits_per_task=20)
    kie.submit(REQUEST, idempotency_key="job-1")

    with pytest.raises(VendorRejected) as info:
        kie.submit(REQUEST, idempotency_key="job-2")

    assert info.value.code == "kie_402"


# --- admin ------------------------------------------------------------------------------------------


def test_admin_config_stats_calls_and_reset(kie_sim, kie_http, kie) -> None:
    kie.submit(REQUEST, idempotency_key="job-1")

    stats = kie_http.get("/__sim/stats").json()
    bad = kie_http.post("/__sim/config", json={"no_such_knob": 1})
    config = kie_http.post("/__sim/config", json={"maintenance": True}).json()
    calls = kie_http.get("/__sim/calls").json()
    kie_http.post("/__sim/reset")

    assert stats["max_concurrent"] == {"****4e5f": 1} and stats["tasks"] == 1
    assert bad.status_code == 400
    assert config["maintenance"] is True
    assert [c["path"] for c in calls] == [CREATE_PATH]
    assert kie_sim.calls == [] and kie_sim.stats()["tasks"] == 0


def test_knob_values_are_checked(kie_sim) -> None:
    for changes in ({"callback_drop_rate": 2}, {"durations": {"sora-2": {"generating_s": 1}}}, {"rate_limit": -1}):
        with pytest.raises(ValueError):
            kie_sim.configure(**changes)


# --- secrets ----------------------------------------------------------------------------------------


def test_keys_never_in_call_log_exceptions_or_admin(kie_sim, clock, kie_http, kie, inbox) -> None:
    """Failures of every kind, including answers that echo the key back, never show either key."""
    echo = httpx.MockTransport(lambda _: httpx.Response(200, json={"code": 422, "msg": f"bad {KEY}"}))
    leaky = httpx.MockTransport(lambda _: httpx.Response(200, json={"error": f"key {KEY}"}))
    failures: list[Exception] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except (VendorError, CallbackRejected) as exc:
            failures.append(exc)

    task_id = finished_task(kie_sim, clock, kie)
    for kind in ("transport", "http_500", "busy"):
        kie_sim.configure(failure_rate=1.0, failure_kind=kind)
        collect(lambda: kie.poll(task_id))
    kie_sim.configure(failure_rate=0.0)
    collect(lambda: kie.poll(UNKNOWN_TASK))
    for transport in (echo, leaky):
        with httpx.Client(transport=transport, base_url="http://kie.sim") as bad:
            collect(lambda: KieClient(bad, api_key=KEY).submit(REQUEST, idempotency_key="job-2"))
    kie_sim.configure(callback_bad_signature_rate=1.0)
    kie_sim.tick()
    collect(lambda: verify_callback(inbox[0][1], inbox[0][2], hmac_key=HMAC_KEY, now=clock.now))

    assert len(failures) == 7
    for exc in failures:
        text = f"{exc} {exc!r} {getattr(exc, 'detail', '')} {exc.args}"
        assert KEY[:8] not in text and HMAC_KEY[:8] not in text
    admin = "".join(kie_http.get(f"/__sim/{page}").text for page in ("calls", "config", "stats"))
    assert KEY not in admin and HMAC_KEY not in admin
    assert KEY not in repr(kie_sim.calls) + repr(kie) and HMAC_KEY not in repr(kie_sim.callbacks_sent)


# --- loopback: uvicorn serving the sim, a real callback receiver -------------------------------------


class _Receiver(ThreadingHTTPServer):
    received: queue.Queue[tuple[dict[str, str], bytes]]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.put((dict(self.headers.items()), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A tiny callback receiver on a free 127.0.0.1 port, in a thread."""
    server = _Receiver(("127.0.0.1", 0), _ReceiverHandler)
    server.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def served_sim(clock) -> Iterator[tuple[KieSim, str]]:
    """A KieSim with the default (real HTTP) delivery behind uvicorn on a free 127.0.0.1 port."""
    sim = KieSim(api_keys=[KEY], hmac_key=HMAC_KEY, clock=clock, seed=3)
    sim.configure(media_scale=SIM_MEDIA_SCALE)
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


def test_client_and_callback_over_loopback(served_sim, receiver, clock) -> None:
    """The unchanged client submits, polls and downloads over HTTP; the ticker delivers a real,
    verifiable callback to a receiver on another port."""
    sim, base = served_sim
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/kie/callback"
    with httpx.Client(base_url=base, timeout=10) as http:
        client = KieClient(http, api_key=KEY, callback_url=hook)

        task_id = client.submit(
            VideoRequest("sora-2-pro", "1080p", 15, "a fox", image_url=IMAGE_URL), idempotency_key="j"
        )
        first = client.poll(task_id)
        finish(sim, clock)
        sim.start_ticker(interval_s=0.05)
        headers, body = receiver.received.get(timeout=10)
        outcome = client.poll(task_id)

        assert first == Running("waiting")
        assert verify_callback(headers, body, hmac_key=HMAC_KEY, now=clock.now) == task_id
        assert isinstance(outcome, Done)
        assert outcome.files[0].url.startswith(f"{base}/__sim/files/{task_id}/0.mp4?Expires=")
        video = http.get(outcome.files[0].url)
        assert boxes(video.content)[0] == "ftyp" and "moov" in boxes(video.content)
    assert json.loads(json.loads(body)["data"]["resultJson"])["resultUrls"] == [f.url for f in outcome.files]
