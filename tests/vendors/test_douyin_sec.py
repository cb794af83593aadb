"""DouyinModeration against DouyinSim over httpx.MockTransport (time moves by the fake clock), the
simulator's own wire, and both served for real on loopback."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support import wait_for
from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.douyin_sec import IMAGE_PATH, TEXT_PATH, TOKEN_PATH, DouyinModeration, verdict_of
from vendors.moderation import (
    TOKEN_MARGIN_S,
    CheckItem,
    Decision,
    ItemKind,
    MemoryTokenCache,
    PushRejected,
    PushRequest,
    Submission,
    Verdict,
)
from vendors.sim.common import asgi_app
from vendors.sim.douyin import V1_IMAGE_PATH, V1_TEXT_PATH, DouyinSim

APPID = "tt5f1c0a9e3b7d2c4e01"
SECRET = "dys-8e2b4c6a0f1d3e5b7a9c8d6e4f2a0b1c"
BASE_URL = "https://developer.toutiao.com"
CLEAN_URL = "https://img.example/cat.png"
Handler = Callable[[httpx.Request], httpx.Response]
Arrange = Callable[[DouyinSim], Handler]


class RecordingTokenCache(MemoryTokenCache):
    """A TokenCache that also remembers the lifetime it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.ttls: dict[str, float] = {}

    def set(self, key: str, token: str, ttl_s: float) -> None:
        super().set(key, token, ttl_s)
        self.ttls[key] = ttl_s


class RacingTokenCache(MemoryTokenCache):
    """A shared cache where another worker acts right after this read (`after_next_get`)."""

    def __init__(self) -> None:
        super().__init__()
        self.after_next_get: Callable[[], object] | None = None

    def get(self, key: str) -> str | None:
        value = super().get(key)
        hook, self.after_next_get = self.after_next_get, None
        if hook is not None:
            hook()
        return value


@pytest.fixture
def dy_sim(clock) -> DouyinSim:
    return DouyinSim(appid=APPID, secret=SECRET, clock=clock, seed=7)


@pytest.fixture
def dy_http(dy_sim: DouyinSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(dy_sim.handle), base_url=BASE_URL, timeout=5) as http:
        yield http


@pytest.fixture
def tokens() -> RecordingTokenCache:
    return RecordingTokenCache()


@pytest.fixture
def douyin(dy_http: httpx.Client, tokens: RecordingTokenCache, clock) -> DouyinModeration:
    return DouyinModeration(dy_http, appid=APPID, secret=SECRET, tokens=tokens, clock=clock)


def text(content: str) -> CheckItem:
    return CheckItem(ItemKind.TEXT, content)


def image(url: str) -> CheckItem:
    return CheckItem(ItemKind.IMAGE, url)


def paths(sim: DouyinSim) -> list[str]:
    return [call.path for call in sim.calls]


def token_of(http: httpx.Client) -> str:
    answer = http.post(TOKEN_PATH, json={"appid": APPID, "secret": SECRET, "grant_type": "client_credential"})
    token: str = answer.json()["data"]["access_token"]
    return token


# --- verdicts in the call ---------------------------------------------------------------------------

VERDICTS = [
    pytest.param(text("a red fox in the snow"), Decision.PASS, 1.0, (), id="text-pass"),
    pytest.param(text("buy now sim-reject"), Decision.REJECT, 0.97, ("porn",), id="text-reject"),
    pytest.param(text("hmm sim-review"), Decision.REVIEW, 0.6, ("porn",), id="text-review"),
    pytest.param(image(CLEAN_URL), Decision.PASS, 1.0, (), id="image-pass"),
    pytest.param(image("https://img.example/sim-reject.png"), Decision.REJECT, 0.97, ("porn",), id="image-reject"),
    pytest.param(image("https://img.example/sim-review:bloody.png"), Decision.REVIEW, 0.6, ("bloody",),
                 id="image-review"),
]  # fmt: skip


@pytest.mark.parametrize(("item", "decision", "confidence", "labels"), VERDICTS)
def test_the_verdict_comes_back_in_the_call(dy_sim, douyin, item, decision, confidence, labels) -> None:
    submission = douyin.submit(item, reference="audit-1")

    assert submission.verdict is not None
    assert submission.verdict.decision is decision
    assert submission.verdict.confidence == pytest.approx(confidence)
    assert submission.verdict.labels == labels
    assert submission.verdict.raw  # Douyin's answer, for the audit row


@pytest.mark.parametrize(
    "item", [text("x sim-reject"), image("https://img.example/sim-reject.png")], ids=["text", "image"]
)
def test_percent_probs_are_read_as_percentages(dy_sim, douyin, item) -> None:
    dy_sim.configure(prob_percent=True)

    verdict = douyin.submit(item, reference="audit-1").verdict

    assert verdict is not None and verdict.raw
    assert (verdict.decision, verdict.confidence) == (Decision.REJECT, pytest.approx(0.97))


def test_text_task_id_is_douyins_and_image_ids_are_generated_unique(dy_sim, douyin) -> None:
    items = [text("one"), text("two sim-reject"), text("one"), image(CLEAN_URL), image(CLEAN_URL)]

    ids = [douyin.submit(item, reference="audit-1").platform_task_id for item in items]

    assert len(set(ids)) == len(ids)
    sim_text_ids = [call.task_id for call in dy_sim.calls if call.path == TEXT_PATH]
    assert ids[:3] == sim_text_ids
    assert all(task_id.startswith("douyin-") for task_id in ids[3:])


def test_rules_for_answers_the_simulator_does_not_give() -> None:
    """Hits win; labels fall back to `target`; a classic answer without `hit` hits at prob 1."""
    cases = {
        "two-hits": [{"model_name": "porn", "hit": True, "prob": 0.8}, {"target": "ad", "hit": True, "prob": 0.9}],
        "hit-no-prob": [{"model_name": "bloody", "hit": True}, {"model_name": "porn", "hit": False, "prob": 0.7}],
        "classic": [{"model_name": "antidirt", "prob": 1, "target": "default"}],
        "low": [{"model_name": "antidirt", "prob": 0.2}, {"model_name": "porn", "prob": 0.5}],
        "empty": [],
    }

    got = {name: verdict_of(predicts, raw={}) for name, predicts in cases.items()}

    assert got["two-hits"] == Verdict(Decision.REJECT, 0.9, ("porn", "ad"), {})
    assert got["hit-no-prob"] == Verdict(Decision.REJECT, 1.0, ("bloody",), {})
    assert got["classic"] == Verdict(Decision.REJECT, 1.0, ("antidirt",), {})
    assert got["low"] == Verdict(Decision.PASS, 0.5, (), {})  # exactly at the band is still a pass
    assert got["empty"] == Verdict(Decision.PASS, 1.0, (), {})


def test_wire_carries_token_as_x_token_for_text_and_in_the_body_for_images(dy_sim, douyin) -> None:
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return dy_sim.handle(request)

    with httpx.Client(transport=httpx.MockTransport(spy), base_url=BASE_URL) as http:
        client = DouyinModeration(http, appid=APPID, secret=SECRET, tokens=MemoryTokenCache())
        client.submit(text("hello"), reference="audit-1")
        client.submit(image(CLEAN_URL), reference="audit-2")

    token_body, text_body, image_body = (json.loads(request.content) for request in seen)
    token = seen[1].headers["X-Token"]
    assert token_body == {"appid": APPID, "secret": SECRET, "grant_type": "client_credential"}
    assert text_body == {"tasks": [{"content": "hello"}]}
    assert image_body == {"app_id": APPID, "access_token": token, "image": CLEAN_URL}
    assert "x-token" not in seen[2].headers


# --- token ------------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused(dy_sim, douyin, tokens) -> None:
    for item in (text("a"), image(CLEAN_URL), text("b")):
        douyin.submit(item, reference="audit-1")

    assert paths(dy_sim) == [TOKEN_PATH, TEXT_PATH, IMAGE_PATH, TEXT_PATH]
    assert len({call.api_key for call in dy_sim.calls[1:]}) == 1
    assert tokens.ttls == {f"douyin:access_token:{APPID}": dy_sim.knobs.token_ttl_s - TOKEN_MARGIN_S}


@pytest.mark.parametrize(
    ("item", "path"), [(text("a"), TEXT_PATH), (image(CLEAN_URL), IMAGE_PATH)], ids=["text", "image"]
)
def test_an_expired_token_is_refreshed_once_and_the_check_completes(dy_sim, douyin, item, path) -> None:
    douyin.submit(item, reference="audit-1")
    dy_sim.expire_tokens()

    submission = douyin.submit(item, reference="audit-2")

    assert submission.verdict is not None and submission.verdict.decision is Decision.PASS
    assert paths(dy_sim) == [TOKEN_PATH, path, path, TOKEN_PATH, path]
    assert dy_sim.stats()["tokens_issued"] == 2


def test_a_token_refused_twice_is_a_permanent_failure_after_one_retry(dy_sim, douyin) -> None:
    dy_sim.configure(token_ttl_s=0)  # every token is dead on arrival

    with pytest.raises(VendorRejected) as info:
        douyin.submit(text("a"), reference="audit-1")

    assert info.value.code == "douyin_401"
    assert paths(dy_sim) == [TOKEN_PATH, TEXT_PATH, TOKEN_PATH, TEXT_PATH]


def test_a_token_another_process_refreshed_is_used_not_fetched_again(dy_sim, dy_http, clock) -> None:
    """Fetching cuts the previous token to 5 minutes: a worker whose token is refused after another
    worker already refreshed the shared cache uses that token instead of fetching (and cutting) again."""
    shared = RacingTokenCache()
    first = DouyinModeration(dy_http, appid=APPID, secret=SECRET, tokens=shared, clock=clock)
    other = DouyinModeration(dy_http, appid=APPID, secret=SECRET, tokens=shared, clock=clock)
    first.submit(text("a"), reference="audit-1")
    dy_sim.expire_tokens()
    shared.after_next_get = lambda: other.submit(text("b"), reference="audit-2")

    submission = first.submit(text("c"), reference="audit-3")

    assert submission.verdict is not None and submission.verdict.decision is Decision.PASS
    assert dy_sim.stats()["tokens_issued"] == 2
    assert paths(dy_sim) == [TOKEN_PATH, TEXT_PATH, TEXT_PATH, TOKEN_PATH, TEXT_PATH, TEXT_PATH, TEXT_PATH]


def test_a_new_token_cuts_the_previous_one_to_the_grace_period(dy_sim, dy_http, clock) -> None:
    old = token_of(dy_http)
    new = token_of(dy_http)
    check = {"tasks": [{"content": "a"}]}

    clock.advance(dy_sim.knobs.token_grace_s - 1)
    still = dy_http.post(TEXT_PATH, json=check, headers={"X-Token": old}).json()
    clock.advance(2)
    cut = dy_http.post(TEXT_PATH, json=check, headers={"X-Token": old}).json()
    kept = dy_http.post(TEXT_PATH, json=check, headers={"X-Token": new}).json()

    assert "data" in still and "data" in kept
    assert cut["code"] == 401


# --- no push, no query ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "push",
    [
        PushRequest("POST", {}, {"content-type": "application/json"}, b'{"task_id": "x", "hit": false}'),
        PushRequest("GET", {"echostr": "abc", "signature": "s"}, {}, b""),
        PushRequest("POST", {}, {}, b""),
    ],
    ids=["json-event", "verification-get", "empty"],
)
def test_every_push_is_refused(douyin, push) -> None:
    with pytest.raises(PushRejected) as info:
        douyin.parse_push(push)

    assert info.value.reason == "no_push"


def test_there_is_no_query(dy_sim, douyin) -> None:
    task_id = douyin.submit(text("a"), reference="audit-1").platform_task_id

    assert douyin.query(task_id) is None
    assert douyin.query("unknown") is None
    assert paths(dy_sim) == [TOKEN_PATH, TEXT_PATH]


# --- classification ---------------------------------------------------------------------------------


def via_sim(**knobs: object) -> Arrange:
    def arrange(sim: DouyinSim) -> Handler:
        sim.configure(**knobs)
        return sim.handle

    return arrange


def route(sim: DouyinSim, path: str, answer: Handler) -> Handler:
    """The simulator, except that `path` is answered by `answer`."""
    return lambda request: answer(request) if request.url.path == path else sim.handle(request)


def canned_for(path: str, payload: object = None, *, status: int = 200, body: bytes | None = None) -> Arrange:
    """The simulator, except that `path` gets a fixed answer the adapter cannot provoke."""
    content = body if body is not None else json.dumps(payload).encode()

    return lambda sim: route(sim, path, lambda _request: httpx.Response(status, content=content))


TEXT_400 = {"error_id": "e1", "code": 400, "message": "tasks is empty", "exception": "tasks is empty"}
TEXT = text("a")
IMAGE = image(CLEAN_URL)

CLASSIFICATION = [
    pytest.param(canned_for(TEXT_PATH, TEXT_400), TEXT, VendorRejected, "douyin_400", id="text-400"),
    pytest.param(canned_for(IMAGE_PATH, {"error": 1, "message": "bad params"}), IMAGE, VendorRejected,
                 "douyin_image_1", id="image-1"),
    pytest.param(via_sim(), image("https://img.example/sim-unreachable.png"), VendorRejected,
                 "douyin_image_unreachable", id="image-3"),
    pytest.param(via_sim(failure_rate={IMAGE_PATH: 1.0}, failure_kind="busy"), IMAGE, VendorUnavailable,
                 "douyin_image_4", id="image-4"),
    pytest.param(canned_for(IMAGE_PATH, {"error": 9, "message": "?"}), IMAGE, VendorRejected, "douyin_image_9",
                 id="image-unlisted"),
    pytest.param(via_sim(failure_rate={TEXT_PATH: 1.0}, failure_kind="busy"), TEXT, VendorUnavailable,
                 "douyin_500", id="text-500"),
    pytest.param(via_sim(failure_rate={TEXT_PATH: 1.0}, failure_kind="http_500"), TEXT, VendorUnavailable,
                 "http_500", id="http-500"),
    pytest.param(via_sim(failure_rate={IMAGE_PATH: 1.0}, failure_kind="http_500"), IMAGE, VendorUnavailable,
                 "http_500", id="image-http-500"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="transport"), TEXT, VendorUnavailable, "transport",
                 id="transport"),
    pytest.param(via_sim(failure_rate={IMAGE_PATH: 1.0}, failure_kind="transport"), IMAGE, VendorUnavailable,
                 "transport", id="image-transport"),
    pytest.param(via_sim(failure_rate={TOKEN_PATH: 1.0}, failure_kind="busy"), TEXT, VendorUnavailable,
                 "douyin_token_-1", id="token-busy"),
    pytest.param(canned_for(TEXT_PATH, status=429, body=b"slow down"), TEXT, VendorUnavailable, "http_429",
                 id="http-429"),
    pytest.param(canned_for(TEXT_PATH, status=404, body=b"not found"), TEXT, VendorRejected, "http_404",
                 id="http-404"),
    pytest.param(canned_for(TEXT_PATH, {"code": 401, "message": "no"}, status=401), TEXT, VendorRejected,
                 "douyin_401", id="http-401-envelope"),
    pytest.param(canned_for(TEXT_PATH, {"log_id": "1", "data": [{"code": 3, "msg": "task failed"}]}), TEXT,
                 VendorRejected, "douyin_task_3", id="task-code"),
    pytest.param(canned_for(TEXT_PATH, body=b"<html>gateway</html>"), TEXT, VendorProtocolError, "not_json",
                 id="not-json"),
    pytest.param(canned_for(TEXT_PATH, {"log_id": "1", "data": []}), TEXT, VendorProtocolError, "bad_answer",
                 id="text-no-tasks"),
    pytest.param(canned_for(TEXT_PATH, {"log_id": "1", "data": [{"code": 0}]}), TEXT, VendorProtocolError,
                 "bad_predicts", id="text-no-predicts"),
    pytest.param(canned_for(IMAGE_PATH, {"message": "ok"}), IMAGE, VendorProtocolError, "bad_answer",
                 id="image-no-error"),
    pytest.param(canned_for(TOKEN_PATH, {"err_no": 0, "data": {}}), TEXT, VendorProtocolError, "bad_token_answer",
                 id="token-no-data"),
    pytest.param(canned_for(TOKEN_PATH, {"access_token": "x"}), TEXT, VendorProtocolError, "bad_token_answer",
                 id="token-no-err_no"),
]  # fmt: skip


@pytest.mark.parametrize(("arrange", "item", "bucket", "code"), CLASSIFICATION)
def test_classification(clock, arrange: Arrange, item: CheckItem, bucket: type[VendorError], code: str) -> None:
    """Each Douyin answer lands in exactly one bucket, with a stable code."""
    sim = DouyinSim(appid=APPID, secret=SECRET, clock=clock, seed=1)
    transport = httpx.MockTransport(arrange(sim))
    with httpx.Client(transport=transport, base_url=BASE_URL) as http, pytest.raises(VendorError) as info:
        DouyinModeration(http, appid=APPID, secret=SECRET, tokens=MemoryTokenCache(), clock=clock).submit(
            item, reference="audit-1"
        )

    assert type(info.value) is bucket
    assert info.value.code == code


@pytest.mark.parametrize(
    ("appid", "secret", "code"),
    [(APPID, "dys-wrong-0000000000000000", "douyin_token_40017"), ("tt0000000000000000", SECRET, "douyin_token_40015")],
    ids=["wrong-secret", "unknown-appid"],
)
def test_bad_credentials_are_permanent(dy_sim, dy_http, appid, secret, code) -> None:
    client = DouyinModeration(dy_http, appid=appid, secret=secret, tokens=MemoryTokenCache())

    with pytest.raises(VendorRejected) as info:
        client.submit(text("a"), reference="audit-1")

    assert info.value.code == code


def test_an_image_that_is_not_an_http_url_is_refused_before_any_call(dy_sim, douyin) -> None:
    with pytest.raises(VendorRejected) as info:
        douyin.submit(image("file:///etc/passwd"), reference="audit-1")

    assert info.value.code == "douyin_bad_image_url"
    assert dy_sim.calls == []


def test_empty_credentials_are_refused(dy_http) -> None:
    with pytest.raises(ValueError):
        DouyinModeration(dy_http, appid=APPID, secret="", tokens=MemoryTokenCache())


# --- the simulator's own wire -----------------------------------------------------------------------


def test_sim_token_answer_has_the_documented_shape(dy_sim, dy_http) -> None:
    ok = dy_http.post(TOKEN_PATH, json={"appid": APPID, "secret": SECRET, "grant_type": "client_credential"}).json()
    grant = dy_http.post(TOKEN_PATH, json={"appid": APPID, "secret": SECRET, "grant_type": "password"}).json()
    missing = dy_http.post(TOKEN_PATH, json={"appid": APPID}).json()

    assert set(ok) == {"err_no", "err_tips", "data"} and ok["err_no"] == 0
    assert set(ok["data"]) == {"access_token", "expires_in"} and ok["data"]["expires_in"] == 7200
    assert (grant["err_no"], missing["err_no"]) == (40020, 40014)


def test_sim_text_answers_have_the_documented_shapes(dy_http) -> None:
    token = token_of(dy_http)

    ok = dy_http.post(TEXT_PATH, json={"tasks": [{"content": "a"}, {"content": "b"}]}, headers={"X-Token": token})
    empty = dy_http.post(TEXT_PATH, json={"tasks": []}, headers={"X-Token": token}).json()
    anonymous = dy_http.post(TEXT_PATH, json={"tasks": [{"content": "a"}]}).json()

    assert ok.status_code == 200
    assert set(ok.json()) == {"log_id", "data"} and len(ok.json()["data"]) == 2
    assert set(ok.json()["data"][0]) == {"code", "msg", "task_id", "data_id", "cached", "predicts"}
    assert set(ok.json()["data"][0]["predicts"][0]) == {"model_name", "hit", "prob", "target"}
    assert (set(empty), empty["code"]) == ({"error_id", "code", "message", "exception"}, 400)
    assert (anonymous["code"], anonymous["message"]) == (401, "Authentication credentials were not provided.")


def test_sim_image_answers_have_the_documented_shapes(dy_http) -> None:
    token = token_of(dy_http)
    as_data = base64.b64encode(b"pretend png sim-reject").decode()

    def check(**fields: Any) -> dict[str, Any]:
        answer: dict[str, Any] = dy_http.post(
            IMAGE_PATH, json={"app_id": APPID, "access_token": token, **fields}
        ).json()
        return answer

    ok, by_data = check(image=CLEAN_URL), check(image_data=as_data)
    nothing, bad_data, wrong_app = check(), check(image_data="%%%"), check(app_id="tt0", image=CLEAN_URL)
    bad_token = dy_http.post(IMAGE_PATH, json={"app_id": APPID, "access_token": "nope", "image": CLEAN_URL}).json()

    assert set(ok) == {"error", "message", "predicts"} and ok["error"] == 0
    assert all(set(p) == {"model_name", "hit"} for p in ok["predicts"])  # clean: no prob, as documented
    assert [p["model_name"] for p in by_data["predicts"] if p["hit"]] == ["porn"]
    assert [nothing["error"], bad_data["error"], wrong_app["error"], bad_token["error"]] == [1, 1, 1, 2]


def test_sim_v1_endpoints_answer_with_err_no_envelopes(dy_http) -> None:
    token = token_of(dy_http)
    headers = {"access-token": token}

    texts = dy_http.post(V1_TEXT_PATH, json={"app_id": APPID, "content": ["a", "sim-reject"]}, headers=headers).json()
    img = dy_http.post(V1_IMAGE_PATH, json={"app_id": APPID, "image": CLEAN_URL}, headers=headers).json()
    refused = dy_http.post(V1_IMAGE_PATH, json={"app_id": APPID, "image": CLEAN_URL}).json()

    assert (texts["err_no"], [t["predicts"][0]["hit"] for t in texts["data"]]) == (0, [False, True])
    assert set(img) == {"err_no", "err_msg", "log_id", "predicts"} and img["err_no"] == 0
    assert refused["err_no"] != 0


def test_sim_reject_rate_makes_clean_content_hit(dy_sim, douyin) -> None:
    dy_sim.configure(reject_rate=1.0)

    verdict = douyin.submit(text("a red fox"), reference="audit-1").verdict

    assert verdict is not None and verdict.decision is Decision.REJECT


def test_sim_admin_config_calls_stats_and_reset(dy_sim, dy_http, douyin) -> None:
    douyin.submit(text("a sim-reject"), reference="audit-1")
    token = token_of(dy_http)

    changed = dy_http.post("/__sim/config", json={"token_ttl_s": 60, "latency_ms": [0, 0]})
    bad = dy_http.post("/__sim/config", json={"failure_kind": "rate"})
    unknown = dy_http.post("/__sim/config", json={"nope": 1})
    calls = dy_http.get("/__sim/calls").json()
    stats = dy_http.get("/__sim/stats").json()
    dy_http.post("/__sim/reset")

    assert changed.status_code == 200 and dy_sim.knobs.token_ttl_s == 60
    assert (bad.status_code, unknown.status_code) == (400, 400)
    assert [call["path"] for call in calls] == [TOKEN_PATH, TEXT_PATH, TOKEN_PATH]
    assert stats["tokens_issued"] == 2 and stats["verdicts"] == {"reject": 1}
    assert dy_http.get("/__sim/calls").json() == []
    forgotten = dy_http.post(TEXT_PATH, json={"tasks": [{"content": "a"}]}, headers={"X-Token": token}).json()
    assert forgotten["code"] == 401
    assert dy_http.get("/__sim/nope").status_code == 404
    assert dy_http.get(TEXT_PATH).status_code == 404


def test_sim_knobs_reject_bad_values(dy_sim) -> None:
    for changes in ({"failure_rate": 2}, {"failure_kind": "rate"}, {"token_ttl_s": -1}, {"nope": 1}):
        with pytest.raises(ValueError):
            dy_sim.configure(**changes)


# --- secrets ----------------------------------------------------------------------------------------


def test_secret_and_tokens_never_in_call_log_or_exception_text(dy_sim, dy_http, douyin, clock) -> None:
    """Failures of every kind, including answers that echo the secret or token back, never show them."""
    failures: list[VendorError] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except VendorError as exc:
            failures.append(exc)

    def echo(request: httpx.Request) -> httpx.Response:
        """Douyin's 400 body, naming the token the request carried and the secret."""
        said = f"bad {request.headers.get('x-token')} for {SECRET}"
        return httpx.Response(200, json={"error_id": "e", "code": 400, "message": said, "exception": said})

    leaky = {"err_no": 40017, "err_tips": f"secret {SECRET} is wrong"}
    douyin.submit(text("warm up"), reference="audit-0")
    for kind in ("transport", "http_500", "busy"):
        dy_sim.configure(failure_rate=1.0, failure_kind=kind)
        collect(lambda: douyin.submit(text("a"), reference="audit-1"))
        collect(lambda: douyin.submit(image(CLEAN_URL), reference="audit-2"))
    dy_sim.configure(failure_rate=0.0, token_ttl_s=0)
    dy_sim.expire_tokens()
    collect(lambda: douyin.submit(text("a"), reference="audit-3"))
    dy_sim.configure(token_ttl_s=7200)
    for arrange in (lambda sim: route(sim, TEXT_PATH, echo), canned_for(TOKEN_PATH, leaky)):
        with httpx.Client(transport=httpx.MockTransport(arrange(dy_sim)), base_url=BASE_URL) as bad:
            client = DouyinModeration(bad, appid=APPID, secret=SECRET, tokens=MemoryTokenCache(), clock=clock)
            collect(lambda client=client: client.submit(text("a"), reference="audit-4"))

    assert [exc.code for exc in failures] == [
        "transport", "transport", "http_500", "http_500", "douyin_500", "douyin_image_4", "douyin_401",
        "douyin_400", "douyin_token_40017",
    ]  # fmt: skip
    assert "****" in failures[-2].detail  # the echoed token and secret, masked
    for exc in failures:
        shown = f"{exc} {exc!r} {exc.detail} {exc.args}"
        assert SECRET[:8] not in shown
        assert "08011218" not in shown  # every simulated token starts so
    admin = "".join(dy_http.get(f"/__sim/{page}").text for page in ("calls", "config", "stats"))
    logged = admin + repr(dy_sim.calls)
    assert SECRET not in logged + repr(douyin) and "08011218" not in logged


# --- loopback: uvicorn serving the sim ----------------------------------------------------------------


@pytest.fixture
def dy_loopback(dy_sim: DouyinSim) -> Iterator[str]:
    """`dy_sim` behind uvicorn on a free 127.0.0.1 port, in a thread; stopped at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(dy_sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_adapter_checks_text_and_image_over_loopback(dy_sim, dy_loopback, clock) -> None:
    with httpx.Client(base_url=dy_loopback, timeout=10) as http:
        client = DouyinModeration(http, appid=APPID, secret=SECRET, tokens=MemoryTokenCache(), clock=clock)
        checked = client.submit(text("a red fox sim-review"), reference="audit-1")
        pictured = client.submit(image("https://img.example/sim-reject.png"), reference="audit-2")

    assert isinstance(checked, Submission) and isinstance(pictured, Submission)
    assert checked.verdict is not None and checked.verdict.decision is Decision.REVIEW
    assert pictured.verdict is not None and pictured.verdict.decision is Decision.REJECT
    assert paths(dy_sim) == [TOKEN_PATH, TEXT_PATH, IMAGE_PATH]
