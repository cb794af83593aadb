"""Douyin (ByteDance) mini-app content-security simulator (VENDORS.md §5.6, §5.7, §11).

One app (`appid`, `secret`) on one host; every vendor path answers HTTP 200 with Douyin's own
envelope, so `vendors.douyin_sec` runs against it unchanged:

- `POST /api/apps/v2/token` -> `{err_no, err_tips, data: {access_token, expires_in}}`; err_no
  40015 unknown appid, 40017 wrong secret, 40020 grant_type not `client_credential`, 40014 a field
  missing [?]. Tokens live `token_ttl_s`; a new token cuts the app's older ones to `token_grace_s`
  (Douyin: 5 minutes). `expire_tokens()` ends every token now.
- `POST /api/v2/tags/text/antidirt` (header `X-Token`, `{tasks: [{content}]}`) -> `{log_id, data:
  [{code, msg, task_id, data_id, cached, predicts: [{model_name, hit, prob, target}]}]}`; a bad or
  expired token -> `{error_id, code: 401, message, exception}`, no tasks -> the same with code 400.
- `POST /api/apps/censor/image` (v2, `{app_id, access_token, image | image_data}`) -> `{error,
  message, predicts: [{model_name, hit}]}`; error 1 bad params, 2 bad token, 3 download failed,
  4 internal.
- For completeness, the open.douyin.com pair on the same app: `POST /api/apps/v1/censor/text/`
  (`{app_id, content: [...]}`) and `POST /api/apps/v1/censor/image/`, header `access-token`,
  `{err_no, err_msg, log_id, ...}`. They take this app's token (the real host wants a `clt.` client
  token) and their error numbers are [?].

Verdicts come from markers in the text or image URL (or decoded `image_data`): `sim-reject` -> a
hit, prob 0.97, model `porn`; `sim-review` -> no hit, prob 0.6; `sim-reject:<model>` or
`sim-review:<model>` names another model; `sim-unreachable` in an image URL -> image error 3;
`reject_rate` makes clean content hit at random. [I] Image v2 predictions carry no `prob` on the
real host; here the prediction a marker touched carries one, so the review band can be reached.
`prob_percent` reports probs on a 0..100 scale [?].

Chaos: `failure_rate` (global or per path) with `failure_kind` `http_500`, `busy` (image error 4,
token err_no -1, text code 500 [?], v1 err_no -1 [?]) or `transport`; `latency_ms`. Admin routes
live under `/__sim/` only. Calls are recorded with tokens masked and the secret dropped. One lock
guards all state; the object is safe to share between threads.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Final

import httpx

from vendors.sim.common import (
    ApiKnobs,
    Call,
    SimulatorBase,
    admin_response,
    check_non_negative,
    check_rate,
    json_response,
    mask_key,
    parse_body,
    roll,
    scrub_body,
)

TOKEN_PATH: Final = "/api/apps/v2/token"  # noqa: S105 (a path, not a password)
TEXT_PATH: Final = "/api/v2/tags/text/antidirt"
IMAGE_PATH: Final = "/api/apps/censor/image"
V1_TEXT_PATH: Final = "/api/apps/v1/censor/text/"
V1_IMAGE_PATH: Final = "/api/apps/v1/censor/image/"
IMAGE_MODELS: Final = (
    "porn", "cartoon_leader", "anniversary_flag", "sensitive_flag", "sensitive_text", "leader_recognition",
    "bloody", "fandongtaibiao", "plant_ppx", "high_risk_social_event",
)  # fmt: skip
REJECT_PROB: Final = 0.97
REVIEW_PROB: Final = 0.6
AUTH_MESSAGE: Final = "Authentication credentials were not provided."
V1_BAD_TOKEN: Final = 28001003  # [?] the open.douyin.com error numbers are not confirmed
V1_BAD_PARAMS: Final = 28001005  # [?]
V1_UNREACHABLE: Final = 28001018  # [?]
_MARKER = re.compile(r"sim-(reject|review)(?::([a-z_]+))?")
_SECRET_FIELDS: Final = ("secret", "access_token")


@dataclass(frozen=True)
class DouyinKnobs(ApiKnobs):
    """Every behaviour switch; `configure(**changes)` or `POST /__sim/config` swaps in a copy."""

    failure_kinds: ClassVar[frozenset[str]] = frozenset({"http_500", "busy", "transport"})
    token_ttl_s: float = 7200.0  # `expires_in` of a new token
    token_grace_s: float = 300.0  # what a new token leaves of the app's older ones
    reject_rate: float = 0.0  # clean content hits `porn` at this rate
    prob_percent: bool = False  # probs on a 0..100 scale instead of 0..1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rate("reject_rate", self.reject_rate)
        check_non_negative("token_ttl_s", self.token_ttl_s)
        check_non_negative("token_grace_s", self.token_grace_s)


@dataclass(frozen=True)
class _Req:
    """One vendor call: its JSON body (None when unreadable), the token it carried, the time."""

    body: Mapping[str, object] | None
    token: str
    now: float


@dataclass(frozen=True)
class _Answer:
    payload: dict[str, object]
    task_id: str | None = None


Route = Callable[["DouyinSim", _Req], _Answer]


class DouyinSim(SimulatorBase[DouyinKnobs]):
    """The simulator; see the module docstring and VENDORS.md §5.7."""

    def __init__(
        self, *, appid: str, secret: str, clock: Callable[[], float] = time.time, seed: int | None = None
    ) -> None:
        super().__init__(DouyinKnobs(seed=seed), clock)
        self._appid = appid
        self._secret = secret
        self._tokens: dict[str, float] = {}  # token -> expires at
        self._issued = 0
        self._verdicts: Counter[str] = Counter()

    # --- Python-side conveniences for tests (the rest come from SimulatorBase) --------------------

    def expire_tokens(self) -> None:
        """Every token issued so far stops working now (as after Douyin's 2 h)."""
        with self._lock:
            now = self._clock()
            self._tokens = {token: min(at, now) for token, at in self._tokens.items()}

    def _forget(self) -> None:
        """Tokens and counters go; knobs stay."""
        self._tokens.clear()
        self._issued = 0
        self._verdicts.clear()

    def stats(self) -> dict[str, object]:
        with self._lock:
            now = self._clock()
            return {
                "tokens_issued": self._issued,
                "tokens_valid": sum(1 for at in self._tokens.values() if at > now),
                "verdicts": dict(self._verdicts),
                "calls": dict(Counter(call.path for call in self._log.snapshot())),
            }

    # --- HTTP entry point -------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: `/__sim/...` admin, or a vendor path (latency, chaos, envelope)."""
        path = request.url.path
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        route = ROUTES.get(path) if request.method == "POST" else None
        if route is None:
            return json_response({"error": "not found"}, status=404)
        body = parse_body(request)
        return self._serve(request, body, partial(self._answer, route, request, body))

    def _answer(
        self, route: Route, request: httpx.Request, body: Mapping[str, object] | None
    ) -> tuple[httpx.Response, str | None]:
        answer = route(self, _Req(body, _token_of(request, body), self._clock()))
        return json_response(answer.payload), answer.task_id

    def _coded_failure(self, kind: str, request: httpx.Request) -> httpx.Response:
        """Every kind but `http_500` and `transport` is `busy`: each path's own "system error"."""
        path = request.url.path
        busy: Mapping[str, dict[str, object]] = {
            TOKEN_PATH: {"err_no": -1, "err_tips": "system error"},
            TEXT_PATH: _text_error(self._rng, 500, "internal error"),
            IMAGE_PATH: {"error": 4, "message": "internal error"},
        }
        return json_response(busy.get(path, {"err_no": -1, "err_msg": "system error", "log_id": self._log_id()}))

    def _log_call(self, request: httpx.Request, body: Mapping[str, object] | None, task_id: str | None) -> None:
        shown, token = scrub_body(body or {}, _SECRET_FIELDS), _token_of(request, body)
        self._log.record(Call(request.method, request.url.path, self._clock(), mask_key(token), task_id, shown))

    # --- token (called under the lock) ------------------------------------------------------------

    def _issue(self, req: _Req) -> _Answer:
        body = req.body or {}
        if not all(body.get(k) for k in ("appid", "secret", "grant_type")):
            return _Answer({"err_no": 40014, "err_tips": "bad params"})
        if body["appid"] != self._appid:
            return _Answer({"err_no": 40015, "err_tips": "bad appid"})
        if body["secret"] != self._secret:
            return _Answer({"err_no": 40017, "err_tips": "bad secret"})
        if body["grant_type"] != "client_credential":
            return _Answer({"err_no": 40020, "err_tips": "bad grant_type"})
        grace_end = req.now + self._knobs.token_grace_s
        self._tokens = {t: min(at, grace_end) for t, at in self._tokens.items() if at > req.now}
        token = "08011218" + self._rng.randbytes(24).hex()
        self._tokens[token] = req.now + self._knobs.token_ttl_s
        self._issued += 1
        data = {"access_token": token, "expires_in": round(self._knobs.token_ttl_s)}
        return _Answer({"err_no": 0, "err_tips": "success", "data": data})

    def _valid(self, token: str, now: float) -> bool:
        return now < self._tokens.get(token, -1.0)

    # --- checks (called under the lock) -----------------------------------------------------------

    def _text(self, req: _Req) -> _Answer:
        if not self._valid(req.token, req.now):
            return _Answer(_text_error(self._rng, 401, AUTH_MESSAGE))
        tasks = (req.body or {}).get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(_content(t) is not None for t in tasks):
            return _Answer(_text_error(self._rng, 400, "tasks must be a non-empty list of {content}"))
        data = [self._text_task(str(_content(task))) for task in tasks]
        return _Answer({"log_id": self._log_id(), "data": data}, task_id=str(data[0]["task_id"]))

    def _text_task(self, content: str) -> dict[str, object]:
        predicts = [self._predict(*self._verdict(content, default="antidirt"), target="default")]
        task_id = str(uuid.UUID(bytes=self._rng.randbytes(16), version=1))
        return {"code": 0, "task_id": task_id, "data_id": None, "cached": False, "predicts": predicts, "msg": "ok"}

    def _image(self, req: _Req) -> _Answer:
        if not self._valid(req.token, req.now):
            return _Answer({"error": 2, "message": "access_token is invalid or expired"})
        seen, problem = _image_content((req.body or {}), self._appid)
        if problem == "unreachable":
            return _Answer({"error": 3, "message": "image download failed"})
        if problem:
            return _Answer({"error": 1, "message": problem})
        return _Answer({"error": 0, "message": "", "predicts": self._image_predicts(seen)})

    def _image_predicts(self, seen: str) -> list[dict[str, object]]:
        decision, model, prob = self._verdict(seen, default="porn")
        return [
            self._predict(decision, model, prob) if name == model and decision != "pass" else _quiet(name)
            for name in dict.fromkeys((model, *IMAGE_MODELS))
        ]

    def _v1_text(self, req: _Req) -> _Answer:
        body = req.body or {}
        if not self._valid(req.token, req.now):
            return _Answer({"err_no": V1_BAD_TOKEN, "err_msg": "access-token invalid", "log_id": self._log_id()})
        content = body.get("content")
        if body.get("app_id") != self._appid or not isinstance(content, list) or not content:
            return _Answer({"err_no": V1_BAD_PARAMS, "err_msg": "bad params", "log_id": self._log_id()})
        data = [self._text_task(str(text)) for text in content]
        answer = {"err_no": 0, "err_msg": "", "log_id": self._log_id(), "data": data}
        return _Answer(answer, task_id=str(data[0]["task_id"]))

    def _v1_image(self, req: _Req) -> _Answer:
        log_id = self._log_id()
        if not self._valid(req.token, req.now):
            return _Answer({"err_no": V1_BAD_TOKEN, "err_msg": "access-token invalid", "log_id": log_id})
        seen, problem = _image_content((req.body or {}), self._appid)
        if problem:
            err_no = V1_UNREACHABLE if problem == "unreachable" else V1_BAD_PARAMS
            return _Answer({"err_no": err_no, "err_msg": problem, "log_id": log_id})
        answer = {"err_no": 0, "err_msg": "", "log_id": log_id, "predicts": self._image_predicts(seen)}
        return _Answer(answer, task_id=log_id)

    def _verdict(self, content: str, *, default: str) -> tuple[str, str, float]:
        """(pass | reject | review, model, prob) from the markers, else a `reject_rate` roll."""
        marker = _MARKER.search(content)
        if marker is not None:
            decision, model = marker.group(1), marker.group(2) or "porn"
        elif roll(self._rng, self._knobs.reject_rate):
            decision, model = "reject", "porn"
        else:
            decision, model = "pass", default
        self._verdicts[decision] += 1
        return decision, model, {"reject": REJECT_PROB, "review": REVIEW_PROB}.get(decision, 0.0)

    def _predict(self, decision: str, model: str, prob: float, **extra: str) -> dict[str, object]:
        shown = round(prob * 100, 2) if self._knobs.prob_percent else prob
        return {"model_name": model, "hit": decision == "reject", "prob": shown, **extra}

    def _log_id(self) -> str:
        """Like `2018112821375501001506902813132`: UTC time to the second, then 17 digits."""
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self._clock()))
        return stamp + f"{self._rng.randrange(10**17):017d}"


ROUTES: Final[Mapping[str, Route]] = {
    TOKEN_PATH: DouyinSim._issue,
    TEXT_PATH: DouyinSim._text,
    IMAGE_PATH: DouyinSim._image,
    V1_TEXT_PATH: DouyinSim._v1_text,
    V1_IMAGE_PATH: DouyinSim._v1_image,
}


# --- wire helpers ---------------------------------------------------------------------------------


def _token_of(request: httpx.Request, body: Mapping[str, object] | None) -> str:
    """The token a call carries: `X-Token` (classic text), `access-token` (v1), or the body (image v2)."""
    header: str = request.headers.get("x-token") or request.headers.get("access-token") or ""
    if header:
        return header
    token = (body or {}).get("access_token")
    return token if isinstance(token, str) else ""


def _text_error(rng: random.Random, code: int, message: str) -> dict[str, object]:
    return {"error_id": rng.randbytes(16).hex(), "code": code, "message": message, "exception": message}


def _quiet(model: str) -> dict[str, object]:
    """An image v2 prediction as documented: no `prob`."""
    return {"model_name": model, "hit": False}


def _content(task: object) -> str | None:
    content = task.get("content") if isinstance(task, dict) else None
    return content if isinstance(content, str) else None


def _image_content(body: Mapping[str, object], appid: str) -> tuple[str, str]:
    """(what the markers are read from, problem): problem is "" when the image can be checked,
    "unreachable" when it cannot be downloaded, else the bad-params message."""
    if body.get("app_id") != appid:
        return "", "app_id does not match the token's app"
    image, data = body.get("image"), body.get("image_data")
    if isinstance(image, str) and image:
        if "sim-unreachable" in image or not image.startswith(("http://", "https://")):
            return image, "unreachable"
        return image, ""
    if isinstance(data, str) and data:
        try:
            return base64.b64decode(data, validate=True).decode("utf-8", "replace"), ""
        except (binascii.Error, ValueError):
            return "", "image_data is not base64"
    return "", "image or image_data is required"
