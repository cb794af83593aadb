"""KIE.ai Sora 2 / Sora 2 Pro simulator (VENDORS.md §4.7, §11).

`POST /api/v1/jobs/createTask` and `GET /api/v1/jobs/recordInfo` answer HTTP 200 with `{code, msg,
data}`, so `vendors.kie` runs against it unchanged. Tasks move waiting -> queuing -> generating ->
success|fail by the injected `clock` (tests move the clock instead of sleeping); each task's fate and
timeline are fixed when it is accepted. Like the real vendor it never dedupes: every accepted
createTask is a new task, whatever `X-Request-Id` says, and `created_tasks()` lists them all
(orphans of lost answers included). The admin surface lives under `/__sim/` only. One lock
guards all state; the object is safe to share between threads.

Callbacks: the simulator has no thread of its own. `tick()` finds tasks that reached success/fail
by the clock (or by `force`), and hands every callback that is due to `deliver(url, headers, body)`;
tests call it after moving the clock. When served on loopback, `start_ticker()` calls `tick()`
from a daemon thread until `stop_ticker()`. The default `deliver` POSTs from a background thread;
a failed delivery is lost (no retry schedule is simulated).

The result video is an H.264 MP4 of the task's variant (`vendors.sim.video`), made when it is
first downloaded and kept by variant and input: 720p is 720x1280 and 1080p (`size` high) is
1080x1920 in the default portrait orientation (1280x720, 1920x1080 with `aspect_ratio`
landscape), as long as `n_frames` says (10 s when it is left out, KIE's default), with the prompt
written in and the reference image (if it can be fetched) shown. `media_scale` scales frame size
and length (1: the vendor's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import httpx
from PIL import Image

from vendors.sim.common import (
    ApiKnobs,
    Call,
    SimulatorBase,
    admin_response,
    bearer,
    check_non_negative,
    check_rate,
    json_response,
    mask_key,
    parse_body,
    roll,
    signed_url,
    task_id_of,
)
from vendors.sim.media import CACHE, check_scale, fetch_bytes, open_image, scaled
from vendors.sim.outbox import Deliver, Outbox, Ticker, background_poster, copies
from vendors.sim.tasks import TaskBook, TaskQueries, TimedTask
from vendors.sim.video import mp4

CREATE_PATH: Final = "/api/v1/jobs/createTask"
RECORD_PATH: Final = "/api/v1/jobs/recordInfo"
MODELS: Final[Mapping[str, tuple[bool, bool]]] = {
    "sora-2-text-to-video": (False, False),
    "sora-2-image-to-video": (False, True),
    "sora-2-pro-text-to-video": (True, False),
    "sora-2-pro-image-to-video": (True, True),
}
"""The allow-list: model -> (pro: takes `size`, image: needs one `image_urls` entry)."""
DEFAULT_N_FRAMES: Final = "10"
"""[M] `n_frames` is optional at KIE; left out, the clip is 10 s long."""
MSG: Final[Mapping[int, str]] = {
    200: "success", 401: "You do not have access permissions", 402: "Credits insufficient",
    404: "Task not found", 409: "queue full", 429: "Rate limited: too many requests",
    455: "Service unavailable: under maintenance", 500: "Server error",
}  # fmt: skip
_INJECTED_CODE: Final = {"code_500": 500, "busy": 409, "rate": 429}
_PHASES: Final = ("waiting_s", "queuing_s", "generating_s")
_FILE_NAME = re.compile(r"(task_[a-z0-9-]+_\d+)/0\.mp4")

Answer = tuple[int, str, object]
"""What a vendor endpoint answers: envelope `code`, `msg` and `data`."""
post_in_background: Final = background_poster("kie-sim-callback")
"""The default `deliver`: POST from a daemon thread; a failed delivery is lost."""


@dataclass(frozen=True)
class KieKnobs(ApiKnobs):
    """Every behaviour switch; `configure(**changes)` or `POST /__sim/config` swaps in a copy.
    `failure_kind` busy = 409 "queue full", rate = 429."""

    lost_answer_rate: float | Mapping[str, float] = 0.0  # processed, then httpx.ReadTimeout; like failure_rate
    waiting_s: float = 1.0
    queuing_s: float = 2.0
    generating_s: float = 30.0
    durations: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per-variant phase overrides keyed `model/size/n_frames` (size `-` when absent), `*` matching
    any part; the most specific key wins: `{"*/high/*": {"generating_s": 600}}`."""
    job_fail_rate: float = 0.0
    fail_code: str = "501"  # failCode/failMsg of a failed task
    fail_msg: str = "Generation failed"
    job_expiry_s: float = 60 * 86400.0  # records are kept 2 months; then recordInfo answers 404
    result_url_ttl_s: float = 14 * 86400.0  # media kept 14 days from completion: `Expires=` of URLs
    rate_limit: int | None = 20  # createTask calls per key per window; None = no limit
    rate_window_s: float = 10.0
    concurrency_limit: int | None = None  # unfinished tasks per key; over it: 409 "queue full" [I]
    credit_balance: float | None = None  # None = unlimited; setting it sets the balance
    credits_per_task: float = 20.0
    maintenance: bool = False  # every vendor call answers 455
    callback_delay_s: float = 0.0
    callback_drop_rate: float = 0.0
    callback_duplicates: int = 0  # extra identical copies of each callback
    callback_bad_signature_rate: float = 0.0  # per copy
    clock_offset_s: float = 0.0  # added to `X-Webhook-Timestamp` (stale-timestamp tests)
    media_scale: float = 1.0  # result size: 1 = the vendor's frame size and length

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lost_answer_rate", "job_fail_rate", "callback_drop_rate", "callback_bad_signature_rate"):
            check_rate(name, getattr(self, name))
        for name in (*_PHASES, "job_expiry_s", "result_url_ttl_s", "rate_window_s", "credits_per_task",
                     "callback_delay_s", "callback_duplicates"):  # fmt: skip
            check_non_negative(name, getattr(self, name))
        for name in ("rate_limit", "concurrency_limit", "credit_balance"):
            if getattr(self, name) is not None:
                check_non_negative(name, getattr(self, name))
        check_scale(self.media_scale)
        for key, phases in self.durations.items():
            if len(key.split("/")) != 3 or not isinstance(phases, Mapping) or not set(phases) <= set(_PHASES):
                raise ValueError(f"durations[{key!r}] must be 'model/size/n_frames' -> {{{', '.join(_PHASES)}}}")
            for name, value in phases.items():
                check_non_negative(f"durations[{key!r}].{name}", value)

    def phases(self, model: str, size: str | None, n_frames: str) -> tuple[float, float, float]:
        """(waiting_s, queuing_s, generating_s) of one variant: the most specific override wins."""
        parts = (model, size or "-", n_frames)
        merged: dict[str, float] = {name: getattr(self, name) for name in _PHASES}
        keys = ["/".join(p if keep else "*" for p, keep in zip(parts, mask, strict=True))
                for mask in itertools.product((False, True), repeat=3)]  # fmt: skip
        for key in sorted(keys, key=lambda k: -k.count("*")):  # least specific first
            merged.update(self.durations.get(key, {}))
        return merged["waiting_s"], merged["queuing_s"], merged["generating_s"]


@dataclass
class _Task(TimedTask):
    """Waiting from `accepted_at`, queuing from `queuing_at`, generating from `running_at`;
    `fate` is success | fail, `origin` the scheme/host it was created on."""

    queuing_at: float
    model: str
    param: str
    origin: httpx.URL
    callback_url: str | None
    cost: float
    notified: bool = False

    def state(self, now: float) -> str:
        if now < self.queuing_at:
            return "waiting"
        if now < self.running_at:
            return "queuing"
        return "generating" if now < self.done_at else self.fate

    def updated_at(self, now: float) -> float:
        return max(t for t in (self.accepted_at, self.queuing_at, self.running_at, self.done_at) if t <= now)

    def finish(self, fate: str, now: float) -> None:
        super().finish(fate, now)
        self.queuing_at = min(self.queuing_at, self.running_at)


@dataclass(frozen=True)
class SentCallback:
    """One callback handed to `deliver`; `bad_signature` marks an injected wrong signature."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    task_id: str
    at: float
    bad_signature: bool


@dataclass(frozen=True)
class _Pending:
    due: float
    url: str
    body: bytes
    task_id: str
    bad_signature: bool


@dataclass(frozen=True)
class _Req:
    """A parsed vendor call whose api key is known to be valid."""

    http: httpx.Request
    body: Mapping[str, object]
    api_key: str
    now: float


class KieSim(TaskQueries[_Task], SimulatorBase[KieKnobs]):
    """The simulator; see the module docstring and VENDORS.md §4.7."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str],
        hmac_key: str | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        deliver: Deliver | None = None,
        fetch: Callable[[str], bytes | None] = fetch_bytes,
    ) -> None:
        super().__init__(KieKnobs(seed=seed), clock)
        self._keys = frozenset(api_keys)
        self._hmac_key = hmac_key
        self._secret = secrets.token_bytes(16)
        self._fetch = fetch
        self._tasks = TaskBook[_Task](self._lock, clock, lambda: self._knobs.job_expiry_s)
        self._last_ms: dict[str, int] = {}
        self._hits: dict[str, deque[float]] = {}
        self._credits = self._knobs.credit_balance
        self._outbox: Outbox[_Pending, SentCallback] = Outbox(
            render=self._sent_callback, headers=lambda sent: sent.headers, deliver=deliver or post_in_background
        )
        self._ticker = Ticker(self.tick, name="kie-sim-ticker")

    # --- Python-side conveniences for tests (the rest come from SimulatorBase) ----------------------

    @property
    def callbacks_sent(self) -> list[SentCallback]:
        with self._lock:
            return list(self._outbox.sent)

    def _configured(self, changes: Mapping[str, object]) -> None:
        """A new `credit_balance` sets the balance."""
        if "credit_balance" in changes:
            self._credits = self._knobs.credit_balance

    def _forget(self) -> None:
        """Tasks, callbacks and rate windows go; credits refill."""
        self._tasks.clear()
        self._last_ms.clear()
        self._hits.clear()
        self._outbox.clear()
        self._credits = self._knobs.credit_balance

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                **self._tasks.stats(self._keys),
                "credit_balance": self._credits,
                "callbacks": {
                    "sent": len(self._outbox.sent),
                    "pending": len(self._outbox.pending),
                    "dropped": self._outbox.dropped,
                },
            }

    # --- callbacks ----------------------------------------------------------------------------------

    def tick(self) -> int:
        """Queue callbacks of tasks finished by now, deliver those due; return how many were sent."""
        with self._lock:
            now = self._clock()
            self._queue_finished(now)
            sent = self._outbox.release(now)
        return self._outbox.deliver(sent)

    def start_ticker(self, interval_s: float = 0.2) -> None:
        """Call `tick()` every `interval_s` from a daemon thread (loopback serving); idempotent."""
        self._ticker.start(interval_s)

    def stop_ticker(self) -> None:
        self._ticker.stop()

    def _queue_finished(self, now: float) -> None:
        knobs = self._knobs
        for task in self._tasks:
            if task.notified or task.done_at > now or task.gone(now, knobs.job_expiry_s):
                continue
            task.notified = True
            if task.callback_url is not None and not self._outbox.drop(self._rng, knobs.callback_drop_rate):
                self._queue_callback(task, task.callback_url, now)

    def _queue_callback(self, task: _Task, url: str, now: float) -> None:
        """Every copy of a finished task's callback, due `callback_delay_s` after it finished."""
        knobs, body = self._knobs, json.dumps(self._callback_body(task, now)).encode()
        due = task.done_at + knobs.callback_delay_s

        def pending(bad_signature: bool) -> _Pending:
            return _Pending(due, url, body, task.task_id, bad_signature)

        self._outbox.add(copies(self._rng, knobs.callback_duplicates, knobs.callback_bad_signature_rate, pending))

    def _callback_body(self, task: _Task, now: float) -> dict[str, object]:
        """recordInfo's shape plus the credit fields; code 501 with failMsg on a failed task [I]."""
        data = {**self._record(task, now, task.origin), "consumeCredits": task.cost, "remainedCredits": self._credits}
        if task.fate == "fail":
            return {"code": 501, "msg": self._knobs.fail_msg, "data": data}
        return {"code": 200, "msg": MSG[200], "data": data}

    def _sent_callback(self, pending: _Pending, now: float) -> list[SentCallback]:
        """The one copy `pending` stands for, signed now (a wrong key when `bad_signature`)."""
        headers = {"Content-Type": "application/json"}
        if self._hmac_key is not None:
            timestamp = str(int(now + self._knobs.clock_offset_s))
            key = self._rng.randbytes(32) if pending.bad_signature else self._hmac_key.encode()
            digest = hmac.new(key, f"{pending.task_id}.{timestamp}".encode(), hashlib.sha256).digest()
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = base64.b64encode(digest).decode()
        return [SentCallback(pending.url, headers, pending.body, pending.task_id, now, pending.bad_signature)]

    # --- HTTP entry point -----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: `/__sim/...` admin, or a vendor path (latency, chaos, envelope)."""
        path = request.url.path
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        route = {("POST", CREATE_PATH): self._create, ("GET", RECORD_PATH): self._record_info}.get(
            (request.method, path)
        )
        if route is None:
            return json_response({"code": 404, "msg": "Not Found", "data": None}, status=404)
        body: dict[str, object] | None = dict(request.url.params) if request.method == "GET" else parse_body(request)
        answer = partial(self._answer, route, request, body)
        return self._serve(request, body, answer, lost_answer_rate=self._knobs.lost_answer_rate)

    def _answer(
        self, route: Callable[[_Req], Answer], request: httpx.Request, body: dict[str, object] | None
    ) -> tuple[httpx.Response, str | None]:
        code, msg, data = self._dispatch(route, request, body)
        if code == 401:
            return json_response({"code": code, "msg": msg}), None  # the documented body has no `data`
        return json_response({"code": code, "msg": msg, "data": data}), task_id_of(body, data)

    def _dispatch(
        self, route: Callable[[_Req], Answer], request: httpx.Request, body: dict[str, object] | None
    ) -> Answer:
        if self._knobs.maintenance:
            return _error(455)
        key = bearer(request)
        if key not in self._keys:
            return _error(401)
        if body is None:
            return 422, "body must be a JSON object", None
        return route(_Req(request, body, key, self._clock()))

    def _log_call(self, request: httpx.Request, body: Mapping[str, object] | None, task_id: str | None) -> None:
        at, key = self._clock(), mask_key(bearer(request))
        self._log.record(Call(request.method, request.url.path, at, key, task_id, dict(body or {})))

    def _coded_failure(self, kind: str, request: httpx.Request) -> httpx.Response:
        code = _INJECTED_CODE[kind]
        return json_response({"code": code, "msg": MSG[code], "data": None})

    # --- vendor endpoints (called under the lock) -----------------------------------------------

    def _create(self, req: _Req) -> Answer:
        """Checks in order: rate (429), fields (422), credits (402), concurrency (409), then accept."""
        knobs = self._knobs
        if not self._within_rate(req.api_key, req.now):
            return _error(429)
        problem = _invalid(req.body)
        if problem:
            return 422, problem, None
        if self._credits is not None and self._credits < knobs.credits_per_task:
            return _error(402)
        if (
            knobs.concurrency_limit is not None
            and self._tasks.unfinished(req.api_key, now=req.now) >= knobs.concurrency_limit
        ):
            return _error(409)
        task = self._tasks.add(self._new_task(req))
        if self._credits is not None:
            self._credits -= task.cost
        return 200, MSG[200], {"taskId": task.task_id}

    def _record_info(self, req: _Req) -> Answer:
        task = self._tasks.get(str(req.body.get("taskId", "")))
        if task is None or task.account != req.api_key or task.gone(req.now, self._knobs.job_expiry_s):
            return _error(404)
        return 200, MSG[200], self._record(task, req.now, req.http.url)

    def _record(self, task: _Task, now: float, origin: httpx.URL) -> dict[str, object]:
        """recordInfo `data` (VENDORS.md §4.3): times in epoch ms, `resultJson` a JSON string."""
        state = task.state(now)
        done = state in ("success", "fail")
        result = {"resultUrls": [self._result_url(task, origin)]} if state == "success" else None
        return {
            "taskId": task.task_id,
            "model": task.model,
            "state": state,
            "param": task.param,
            "resultJson": json.dumps(result) if result else "",
            "failCode": self._knobs.fail_code if state == "fail" else "",
            "failMsg": self._knobs.fail_msg if state == "fail" else "",
            "costTime": _ms(task.done_at - task.accepted_at) if done else None,
            "completeTime": _ms(task.done_at) if done else None,
            "createTime": _ms(task.accepted_at),
            "updateTime": _ms(task.updated_at(now)),
        }

    def _result_url(self, task: _Task, origin: httpx.URL) -> str:
        expires = int(task.done_at + self._knobs.result_url_ttl_s)
        return signed_url(origin, f"/__sim/files/{task.task_id}/0.mp4", expires=expires, secret=self._secret)

    # --- task helpers (called under the lock) ---------------------------------------------------

    def _new_task(self, req: _Req) -> _Task:
        model, params = str(req.body["model"]), _input(req.body)
        size, n_frames = params.get("size"), str(params.get("n_frames", DEFAULT_N_FRAMES))
        waiting, queuing, generating = self._knobs.phases(model, str(size) if size else None, n_frames)
        return _Task(
            task_id=self._new_task_id(model, req.now),
            account=req.api_key,
            model=model,
            param=json.dumps(req.body),
            origin=req.http.url,
            accepted_at=req.now,
            queuing_at=req.now + waiting,
            running_at=req.now + waiting + queuing,
            done_at=req.now + waiting + queuing + generating,
            fate=self._fate(str(params.get("prompt", ""))),
            callback_url=_opt_str(req.body.get("callBackUrl")),
            cost=self._knobs.credits_per_task,
        )

    def _new_task_id(self, model: str, now: float) -> str:
        """`task_<model>_<epoch-ms>`; a second task in the same ms takes the next free ms."""
        ms = max(_ms(now), self._last_ms.get(model, -1) + 1)
        self._last_ms[model] = ms
        return f"task_{model}_{ms}"

    def _fate(self, prompt: str) -> str:
        if "sim-fail" in prompt:
            return "fail"
        return "fail" if roll(self._rng, self._knobs.job_fail_rate) else "success"

    def _within_rate(self, api_key: str, now: float) -> bool:
        """A sliding window of accepted-by-the-limiter createTask calls per key."""
        limit, window = self._knobs.rate_limit, self._knobs.rate_window_s
        if limit is None:
            return True
        hits = self._hits.setdefault(api_key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    # --- files ------------------------------------------------------------------------------------

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        """`{taskId}/0.mp4` of a successful task; a signed URL must still be valid (a bare path is an
        admin peek)."""
        match = _FILE_NAME.fullmatch(name)
        task_id = match.group(1) if match else None

        def find(now: float) -> Callable[[], bytes] | None:
            task = self._tasks.get(task_id or "")
            if task is None or task.gone(now, self._knobs.job_expiry_s) or task.state(now) != "success":
                return None
            return lambda: self._video(json.loads(task.param))

        return self._signed_file(request, task_id, find, secret=self._secret, content_type="video/mp4")

    def _video(self, body: Mapping[str, object]) -> bytes:
        """The clip a createTask body asks for, made on first download (`vendors.sim.media.CACHE`)."""
        params, scale = _input(body), self._knobs.media_scale
        width, height = frame_size(str(body.get("model")), params)
        width, height = scaled(width, scale, even=True), scaled(height, scale, even=True)
        seconds = int(str(params.get("n_frames", DEFAULT_N_FRAMES))) * scale
        prompt = str(params.get("prompt", ""))
        urls = params.get("image_urls")
        image_url = str(urls[0]) if isinstance(urls, list) and urls else ""
        key = ("kie", width, height, seconds, prompt, image_url)
        return CACHE.get(key, lambda: mp4(width, height, seconds, prompt, self._reference(image_url)))

    def _reference(self, url: str) -> Image.Image | None:
        return open_image(self._fetch(url)) if url else None


# --- wire helpers ---------------------------------------------------------------------------------


def _invalid(body: Mapping[str, object]) -> str:
    """The 422 message naming the first bad field, or "" when the createTask body is acceptable."""
    model = body.get("model")
    if not isinstance(model, str) or model not in MODELS:
        return f"model: unsupported model {model!r}"
    pro, image = MODELS[model]
    if not isinstance(body.get("input"), Mapping):
        return "input: must be an object"
    params = _input(body)
    checks = (
        ("prompt", isinstance(params.get("prompt"), str) and bool(str(params.get("prompt")).strip()),
         "is required"),
        ("n_frames", params.get("n_frames", DEFAULT_N_FRAMES) in ("10", "15"), 'must be "10" or "15"'),
        ("size", ("size" not in params) if not pro else params.get("size", "standard") in ("standard", "high"),
         "must be standard or high (sora-2-pro models only)"),
        ("image_urls", _one_url(params.get("image_urls")) if image else "image_urls" not in params,
         "must hold exactly one URL (image-to-video models only)"),
        ("aspect_ratio", params.get("aspect_ratio", "landscape") in ("portrait", "landscape"),
         "must be portrait or landscape"),
        ("callBackUrl", "callBackUrl" not in body or _opt_str(body.get("callBackUrl")) is not None,
         "must be a URL"),
    )  # fmt: skip
    return next((f"{name}: {rule}" for name, ok, rule in checks if not ok), "")


def frame_size(model: str, params: Mapping[str, object]) -> tuple[int, int]:
    """(width, height) of a variant: 1080p for a pro model with `size` high, else 720p; portrait
    unless `aspect_ratio` is landscape [I: KIE states no pixel sizes; portrait is its default]."""
    short, long = (1080, 1920) if model.startswith("sora-2-pro") and params.get("size") == "high" else (720, 1280)
    return (long, short) if params.get("aspect_ratio") == "landscape" else (short, long)


def _input(body: Mapping[str, object]) -> Mapping[str, object]:
    params = body.get("input")
    return params if isinstance(params, Mapping) else {}


def _one_url(value: object) -> bool:
    return isinstance(value, list) and len(value) == 1 and _opt_str(value[0]) is not None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else None


def _error(code: int) -> Answer:
    return code, MSG[code], None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
