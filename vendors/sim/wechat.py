"""WeChat open-API simulator for content security (VENDORS.md §5.1-5.5, §5.7, §11).

Paths: `GET /cgi-bin/token`, `POST /cgi-bin/stable_token`, `POST /wxa/msg_sec_check` (v2),
`POST /wxa/img_sec_check` (v1, multipart `media`), `POST /wxa/media_check_async` (v2). Answers are
HTTP 200 with `{errcode, errmsg, ...}`, so `vendors.wechat_sec` runs against it unchanged. The
admin surface lives under `/__sim/` only. One lock guards all state; safe to share between threads.

Tokens: `/cgi-bin/token` issues a new token that lives `token_ttl_s`, and (like WeChat) retires every
older one `token_grace_s` later; `stable_token` hands out the newest live token unless
`force_refresh`. Unknown or retired token -> `40001`, expired -> `42001` (`expire_tokens()` expires
them all at once), no token -> `41001`, a token in the body -> `47001`.

Validation, in order: POST only (`43302`), a JSON object body (`47001`), the token, `version` 2
(`40097` [I]: v1 is frozen), `openid` = 28 of `[A-Za-z0-9_-]` (`40003`), in the `openids` knob when
that is set (`43104`), `scene` 1..4 (`40129`), `content` present (`44002`), at most
`max_text_chars` (`45002` "content size out of limit" [M]: the real code for oversize text is not
documented), `media_type` 1|2 and an http(s) `media_url` (`40097`), a URL with `sim-too-big` or an
`img_sec_check` file over `max_image_bytes` (`40006`).

Verdicts come from markers in the text, the image URL or the image bytes: `sim-reject` -> risky,
label 20002, prob 95; `sim-review` -> review, label 21000, prob 55; `sim-keyword` -> risky by the
keyword strategy, label 20006, no prob; otherwise `risky_rate` -> risky 20012 prob 80, else pass
(label 100, `pass_prob` if set). Synchronous answers carry numeric labels, pushes string labels, as
the real ones were seen to.

Pushes: `media_check_async` records a `wxa_media_check` push due `push_delay_s` later. The
simulator has no thread of its own: `tick()` hands each due push to `deliver(url, headers, body)`,
the URL being `push_url` plus `signature/timestamp/nonce` from `push_token` (plain JSON mode only).
`start_ticker()` calls `tick()` from a daemon thread (loopback); the default `deliver` POSTs from a
background thread and a failed delivery is lost (no retry schedule is simulated).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final

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
from vendors.sim.outbox import Deliver, Outbox, Ticker, background_poster, copies

TOKEN_PATH: Final = "/cgi-bin/token"  # noqa: S105 (a path, not a password)
STABLE_TOKEN_PATH: Final = "/cgi-bin/stable_token"  # noqa: S105
TEXT_PATH: Final = "/wxa/msg_sec_check"
IMAGE_PATH: Final = "/wxa/img_sec_check"
MEDIA_PATH: Final = "/wxa/media_check_async"
CHECK_PATHS: Final = frozenset({TEXT_PATH, IMAGE_PATH, MEDIA_PATH})

ERRMSG: Final[Mapping[int, str]] = {
    -1: "system error", 0: "ok", 40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type", 40003: "invalid openid", 40006: "invalid media size",
    40013: "invalid appid", 40097: "invalid args", 40125: "invalid appsecret", 40129: "invalid scene",
    41001: "access_token missing", 41002: "appid missing", 41004: "appsecret missing",
    41005: "media data missing", 42001: "access_token expired", 43001: "require GET method",
    43104: "appid not match openid", 43302: "require POST method", 44002: "empty post data",
    45002: "content size out of limit", 45009: "reach max api daily quota limit",
    47001: "data format error", 87014: "risky content",
}  # fmt: skip
_INJECTED: Final[Mapping[str, tuple[int, str]]] = {
    "code_500": (-1, "system error"),
    "busy": (-1, "system is busy, please retry later"),
    "rate": (45009, ERRMSG[45009]),
}
_OPENID = re.compile(r"[A-Za-z0-9_-]{28}")

Answer = dict[str, object]
Route = Callable[[httpx.Request, dict[str, object] | None, float], Answer]
post_in_background: Final = background_poster("wechat-sim-push")
"""The default `deliver`: POST from a daemon thread; a failed delivery is lost."""


@dataclass(frozen=True)
class WechatKnobs(ApiKnobs):
    """Every behaviour switch; `configure(**changes)` or `POST /__sim/config` swaps in a copy."""

    failure_kind: str = "busy"  # common.FAILURE_KINDS: busy/code_500 = errcode -1, rate = 45009
    token_ttl_s: float = 7200.0
    token_grace_s: float = 300.0  # an older token stays valid this long after a new /cgi-bin/token
    openids: tuple[str, ...] | None = None  # None: any well-formed openid is the app's; else others 43104
    max_text_chars: int = 2500
    max_image_bytes: int = 1_000_000  # img_sec_check only
    risky_rate: float = 0.0  # unmarked content found risky (label 20012, prob 80)
    pass_prob: float | None = None  # the content model's prob on a pass; None = no prob
    push_delay_s: float = 5.0  # the real push comes within 30 minutes
    push_drop_rate: float = 0.0
    push_duplicates: int = 0  # extra identical copies of each push
    push_bad_signature_rate: float = 0.0  # per copy
    clock_offset_s: float = 0.0  # added to a push's `timestamp` (stale-push tests)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("risky_rate", "push_drop_rate", "push_bad_signature_rate"):
            check_rate(name, getattr(self, name))
        for name in ("token_ttl_s", "token_grace_s", "max_text_chars", "max_image_bytes", "push_delay_s",
                     "push_duplicates"):  # fmt: skip
            check_non_negative(name, getattr(self, name))
        if self.pass_prob is not None and not 0 <= self.pass_prob <= 100:
            raise ValueError(f"pass_prob must be within 0..100, got {self.pass_prob!r}")
        if self.openids is not None and not all(isinstance(o, str) and _OPENID.fullmatch(o) for o in self.openids):
            raise ValueError("openids must be 28-character openids")


@dataclass(frozen=True)
class Judgement:
    """A verdict the simulator decided: `strategy` content_model | keyword; `prob` 0..100 or None."""

    suggest: str
    label: int
    prob: float | None
    strategy: str = "content_model"


@dataclass
class _Token:
    expires_at: float
    retired_at: float = float("inf")


@dataclass(frozen=True)
class _Pending:
    due: float
    trace_id: str
    openid: str
    judgement: Judgement


@dataclass(frozen=True)
class SentPush:
    """One push handed to `deliver`; `bad_signature` marks an injected wrong signature."""

    url: str
    body: bytes
    trace_id: str
    at: float
    bad_signature: bool


class WechatSim(SimulatorBase[WechatKnobs]):
    """The simulator; see the module docstring and VENDORS.md §5.7."""

    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        push_token: str,
        push_url: str | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        deliver: Deliver | None = None,
    ) -> None:
        super().__init__(WechatKnobs(seed=seed), clock)
        self.appid = appid
        self.push_url = push_url
        self._secret = secret
        self._push_token = push_token
        self._tokens: dict[str, _Token] = {}
        self._newest: str | None = None
        self._trace_ids: set[str] = set()
        self._outbox: Outbox[_Pending, SentPush] = Outbox(
            render=self._copies,
            headers=lambda _: {"Content-Type": "application/json"},
            deliver=deliver or post_in_background,
        )
        self._counts: Counter[str] = Counter()
        self._ticker = Ticker(self.tick, name="wechat-sim-ticker")

    def __repr__(self) -> str:
        return f"WechatSim(appid={self.appid!r})"

    # --- Python-side conveniences for tests (the rest come from SimulatorBase) ----------------------

    @property
    def pushes_sent(self) -> list[SentPush]:
        with self._lock:
            return list(self._outbox.sent)

    def _forget(self) -> None:
        """Tokens and pushes go."""
        self._tokens.clear()
        self._newest = None
        self._trace_ids.clear()
        self._outbox.clear()
        self._counts.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (the next call with one gets 42001)."""
        with self._lock:
            now = self._clock()
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, now)

    def force(self, job_id: str, kind: str) -> bool:
        """`complete` makes the pending push of trace id `job_id` due now; nothing else is forced."""
        with self._lock:
            outbox = self._outbox
            found = [p for p in outbox.pending if p.trace_id == job_id]
            if kind != "complete" or not found:
                return False
            now = self._clock()
            outbox.pending = [dataclasses.replace(p, due=min(p.due, now)) if p in found else p for p in outbox.pending]
            return True

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        return json_response({"errcode": 404, "errmsg": "no files here"}, status=404)

    def stats(self) -> dict[str, object]:
        with self._lock:
            now = self._clock()
            live = sum(1 for t in self._tokens.values() if now < min(t.expires_at, t.retired_at))
            pushes = {"sent": len(self._outbox.sent), "pending": len(self._outbox.pending)}
            pushes |= {"dropped": self._outbox.dropped, "unrouted": self._counts["push_unrouted"]}
            verdicts = {k.removeprefix("verdict_"): v for k, v in self._counts.items() if k.startswith("verdict_")}
            return {"tokens": {"issued": len(self._tokens), "live": live}, "verdicts": verdicts, "pushes": pushes}

    def url_verification(self, url: str | None = None, *, echostr: str | None = None) -> httpx.Request:
        """The GET WeChat sends to check a push URL (default `push_url`), correctly signed now."""
        target = url or self.push_url or "http://push.invalid/"
        with self._lock:
            echo = echostr or str(self._rng.randrange(10**18, 10**19))
            query = {**self._signed_query(self._push_token), "echostr": echo}
        return httpx.Request("GET", httpx.URL(target).copy_merge_params(query))

    # --- pushes -------------------------------------------------------------------------------------

    def tick(self) -> int:
        """Deliver every push that is due; return how many copies were handed to `deliver`."""
        with self._lock:
            sent = self._outbox.release(self._clock())
        return self._outbox.deliver(sent)

    def start_ticker(self, interval_s: float = 0.2) -> None:
        """Call `tick()` every `interval_s` from a daemon thread (loopback serving); idempotent."""
        self._ticker.start(interval_s)

    def stop_ticker(self) -> None:
        self._ticker.stop()

    def _copies(self, pending: _Pending, now: float) -> list[SentPush]:
        """The copies of one due push, rendered now; none when unrouted or dropped."""
        knobs, push_url = self._knobs, self.push_url
        if push_url is None:
            self._counts["push_unrouted"] += 1
            return []
        if self._outbox.drop(self._rng, knobs.push_drop_rate):
            return []
        body = json.dumps(self._push_body(pending, now), ensure_ascii=False).encode()

        def push(bad_signature: bool) -> SentPush:
            token = base64.b64encode(self._rng.randbytes(12)).decode() if bad_signature else self._push_token
            url = httpx.URL(push_url).copy_merge_params(self._signed_query(token))
            return SentPush(str(url), body, pending.trace_id, now, bad_signature)

        return copies(self._rng, knobs.push_duplicates, knobs.push_bad_signature_rate, push)

    def _push_body(self, pending: _Pending, now: float) -> Answer:
        """The JSON-mode `wxa_media_check` event (VENDORS.md §5.4); labels as strings."""
        result, detail = _result(pending.judgement, as_text=True, pass_prob=self._knobs.pass_prob)
        return {
            "ToUserName": "gh_" + hashlib.sha256(self.appid.encode()).hexdigest()[:12],
            "FromUserName": pending.openid,
            "CreateTime": int(now),
            "MsgType": "event",
            "Event": "wxa_media_check",
            "appid": self.appid,
            "trace_id": pending.trace_id,
            "version": 2,
            "result": result,
            "detail": detail,
        }

    def _signed_query(self, token: str) -> dict[str, str]:
        timestamp = str(int(self._clock() + self._knobs.clock_offset_s))
        nonce = str(self._rng.randrange(10**9, 10**10))
        return {"signature": _signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}

    # --- HTTP entry point -----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: `/__sim/...` admin, or a vendor path (latency, chaos, errcodes)."""
        path = request.url.path
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        route = self._routes().get(path)
        if route is None:
            return httpx.Response(404, text="Not Found")
        body = parse_body(request) if request.method == "POST" else {}
        return self._serve(request, body, partial(self._answer, route, request, body))

    def _answer(
        self, route: Route, request: httpx.Request, body: dict[str, object] | None
    ) -> tuple[httpx.Response, str | None]:
        answer = route(request, body, self._clock())
        trace_id = answer.get("trace_id")
        return json_response(answer), trace_id if isinstance(trace_id, str) else None

    def _routes(self) -> Mapping[str, Route]:
        return {
            TOKEN_PATH: self._token,
            STABLE_TOKEN_PATH: self._stable_token,
            TEXT_PATH: self._checked(self._text),
            IMAGE_PATH: self._checked(self._image),
            MEDIA_PATH: self._checked(self._media),
        }

    def _log_call(self, request: httpx.Request, body: Mapping[str, object] | None, trace_id: str | None) -> None:
        """Tokens only as `****` + last four; secrets and body tokens dropped."""
        token = request.url.params.get("access_token", "")
        shown = dict(body or {})
        if request.url.path in (TOKEN_PATH, STABLE_TOKEN_PATH):
            shown |= {k: v for k, v in request.url.params.items() if k != "secret"}
        at, logged = self._clock(), scrub_body(shown, ("secret", "access_token"))
        self._log.record(Call(request.method, request.url.path, at, mask_key(token), trace_id, logged))

    def _coded_failure(self, kind: str, request: httpx.Request) -> httpx.Response:
        code, message = _INJECTED[kind]
        return json_response({"errcode": code, "errmsg": message})

    # --- tokens (called under the lock) ---------------------------------------------------------

    def _token(self, request: httpx.Request, _: dict[str, object] | None, now: float) -> Answer:
        if request.method != "GET":
            return self._error(43001)
        params = request.url.params
        problem = self._credentials(params.get("grant_type"), params.get("appid"), params.get("secret"))
        return problem or self._issue(now)

    def _stable_token(self, request: httpx.Request, body: dict[str, object] | None, now: float) -> Answer:
        if request.method != "POST":
            return self._error(43302)
        if body is None:
            return self._error(47001)
        problem = self._credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
        if problem:
            return problem
        newest = self._tokens.get(self._newest or "")
        if newest is None or body.get("force_refresh") is True or not now < newest.expires_at:
            return self._issue(now)
        return {"access_token": self._newest, "expires_in": int(newest.expires_at - now)}

    def _credentials(self, grant_type: object, appid: object, secret: object) -> Answer | None:
        if grant_type != "client_credential":
            return self._error(40002)
        if not appid:
            return self._error(41002)
        if appid != self.appid:
            return self._error(40013)
        if not secret:
            return self._error(41004)
        return None if secret == self._secret else self._error(40125)

    def _issue(self, now: float) -> Answer:
        """A new token; every older one retires `token_grace_s` from now."""
        knobs = self._knobs
        for older in self._tokens.values():
            older.retired_at = min(older.retired_at, now + knobs.token_grace_s)
        raw = base64.urlsafe_b64encode(self._rng.randbytes(96)).decode().rstrip("=")
        token = f"{len(self._tokens) % 90 + 10}_{raw}"
        self._tokens[token] = _Token(expires_at=now + knobs.token_ttl_s)
        self._newest = token
        return {"access_token": token, "expires_in": int(knobs.token_ttl_s)}

    def _token_error(self, token: str, now: float) -> int:
        """0 for a live token, else its errcode."""
        if not token:
            return 41001
        known = self._tokens.get(token)
        if known is None or now >= known.retired_at:
            return 40001
        return 42001 if now >= known.expires_at else 0

    # --- checks (called under the lock) ---------------------------------------------------------

    def _checked(
        self, check: Callable[[dict[str, object], float], Answer]
    ) -> Callable[[httpx.Request, dict[str, object] | None, float], Answer]:
        """The checks every content-security call passes before its own: method, body, token."""

        def route(request: httpx.Request, body: dict[str, object] | None, now: float) -> Answer:
            if request.method != "POST":
                return self._error(43302)
            if body is None or "access_token" in body:
                return self._error(47001)
            code = self._token_error(request.url.params.get("access_token", ""), now)
            return self._error(code) if code else check(body, now)

        return route

    def _text(self, body: dict[str, object], now: float) -> Answer:
        problem = self._v2_caller(body)
        content = body.get("content")
        if problem:
            return self._error(problem)
        if not isinstance(content, str) or not content:
            return self._error(44002)
        if len(content) > self._knobs.max_text_chars:
            return self._error(45002)
        judgement = self._judge(content)
        result, detail = _result(judgement, as_text=False, pass_prob=self._knobs.pass_prob)
        return {"errcode": 0, "errmsg": "ok", "result": result, "detail": detail, "trace_id": self._trace_id(now)}

    def _media(self, body: dict[str, object], now: float) -> Answer:
        problem = self._v2_caller(body)
        url, media_type = body.get("media_url"), body.get("media_type")
        if problem:
            return self._error(problem)
        if media_type not in (1, 2) or not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return self._error(40097)
        if "sim-too-big" in url:
            return self._error(40006)
        trace_id, openid = self._trace_id(now), str(body["openid"])
        self._outbox.add([_Pending(now + self._knobs.push_delay_s, trace_id, openid, self._judge(url))])
        return {"errcode": 0, "errmsg": "ok", "trace_id": trace_id}

    def _image(self, body: dict[str, object], _: float) -> Answer:
        """v1 (frozen, sync): `87014` for risky, `0` otherwise (v1 knows no review)."""
        media = body.get("media")
        if not isinstance(media, bytes) or not media:
            return self._error(41005)
        if len(media) > self._knobs.max_image_bytes:
            return self._error(40006)
        risky = self._judge(media.decode("latin-1")).suggest == "risky"
        return self._error(87014) if risky else {"errcode": 0, "errmsg": "ok"}

    def _v2_caller(self, body: Mapping[str, object]) -> int:
        """The errcode of a bad version, openid or scene; 0 when all are fine."""
        openid, scene, allowed = body.get("openid"), body.get("scene"), self._knobs.openids
        if body.get("version") != 2:
            return 40097
        if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
            return 40003
        if allowed is not None and openid not in allowed:
            return 43104
        if isinstance(scene, bool) or scene not in (1, 2, 3, 4):
            return 40129
        return 0

    def _judge(self, content: str) -> Judgement:
        if "sim-reject" in content:
            judgement = Judgement("risky", 20002, 95)
        elif "sim-review" in content:
            judgement = Judgement("review", 21000, 55)
        elif "sim-keyword" in content:
            judgement = Judgement("risky", 20006, None, strategy="keyword")
        elif roll(self._rng, self._knobs.risky_rate):
            judgement = Judgement("risky", 20012, 80)
        else:
            judgement = Judgement("pass", 100, None)
        self._counts[f"verdict_{judgement.suggest}"] += 1
        return judgement

    def _trace_id(self, now: float) -> str:
        """`60ae120f-371d5872-7941a05b`: three groups of eight hex digits, unique."""
        while True:
            trace_id = f"{int(now) & 0xFFFFFFFF:08x}-{self._rng.getrandbits(32):08x}-{self._rng.getrandbits(32):08x}"
            if trace_id not in self._trace_ids:
                self._trace_ids.add(trace_id)
                return trace_id

    def _error(self, code: int) -> Answer:
        rid = f"{self._rng.getrandbits(32):08x}-{self._rng.getrandbits(32):08x}"
        return {"errcode": code, "errmsg": f"{ERRMSG.get(code, 'error')} rid: {rid}"}


# --- wire helpers ---------------------------------------------------------------------------------


def _result(judgement: Judgement, *, as_text: bool, pass_prob: float | None) -> tuple[Answer, list[Answer]]:
    """v2 `result` and `detail`: the content model's entry, then the keyword strategy's."""

    def label(value: int) -> object:
        return str(value) if as_text else value

    by_model = judgement.strategy == "content_model"
    model: Answer = {"strategy": "content_model", "errcode": 0}
    model |= {
        "suggest": judgement.suggest if by_model else "pass",
        "label": label(judgement.label if by_model else 100),
    }
    prob = judgement.prob if by_model and judgement.suggest != "pass" else pass_prob
    if prob is not None:
        model["prob"] = prob
    keyword: Answer = {"strategy": "keyword", "errcode": 0}
    if not by_model:
        keyword |= {
            "suggest": judgement.suggest,
            "label": label(judgement.label),
            "level": 90,
            "keyword": "sim-keyword",
        }
    return {"suggest": judgement.suggest, "label": label(judgement.label)}, [model, keyword]


def _signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode(), usedforsecurity=False).hexdigest()
