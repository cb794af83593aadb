"""WeChat mini-program content security (VENDORS.md §5.1-5.5): the only module that knows its paths,
errcodes and push format. Implements `vendors.moderation.ModerationPlatform`.

- Text goes to `msgSecCheck` v2, which answers in the call: `submit` returns the verdict at once.
  Text over 2500 characters (Python `len`, code points) is split into overlapping chunks, each
  checked on its own; the worst verdict wins, and a reject stops the remaining checks (it cannot get
  worse). The overlap keeps a phrase that straddles a cut inside one chunk.
- Images go to `mediaCheckAsync` v2: `submit` returns WeChat's `trace_id` only; the verdict arrives
  later as a `wxa_media_check` push, read by `parse_push`. WeChat has no query API: `query` is None.
  A push with a nonzero `errcode` and no `result` (`-1008`: WeChat could not download the image)
  is a check that failed: the verdict `failed`, not a malformed push.
- The access token comes from `/cgi-bin/token`, shared through the `TokenCache` under
  `wechat:access_token:<appid>`, kept `expires_in` minus a margin. A `40001`/`42001` answer drops
  the cached token, fetches a new one and repeats that call once; a second token error is permanent.
  The token and the app secret travel only in query strings and never appear in an exception
  (`infra/logging.py` keeps httpx's per-request INFO lines, which show URLs, switched off).

Pushes are plain JSON mode only: the signature is SHA-1 of the sorted `[Token, timestamp, nonce]`.
It does not cover the body, so it proves the sender knew the Token, nothing about the content: a
captured query string can be replayed with another body inside the 300 s window. Secure mode
(AES body + `msg_signature` over it) is not implemented; such a push is `encrypted_unsupported`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Final

import httpx

from vendors.base import VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.moderation import (
    AppClient,
    CheckItem,
    Decision,
    ItemKind,
    PushAnswer,
    PushRejected,
    PushRequest,
    Submission,
    TokenCache,
    Verdict,
)
from vendors.plumbing import json_answer

VENDOR: Final = "wechat"
TOKEN_PATH: Final = "/cgi-bin/token"  # noqa: S105 (a path, not a password)
TEXT_PATH: Final = "/wxa/msg_sec_check"
MEDIA_PATH: Final = "/wxa/media_check_async"
PUSH_EVENT: Final = "wxa_media_check"

TEXT_LIMIT: Final = 2500
CHUNK_OVERLAP: Final = 50
PUSH_WINDOW_S: Final = 300.0

TOKEN_ERRCODES: Final = frozenset({40001, 42001})
UNAVAILABLE_ERRCODES: Final = frozenset({-1, 45009, 45011})
"""`-1` busy, `45009` daily quota, `45011` minute quota [M]; every other nonzero errcode is permanent."""
QUOTA_RETRY_MS: Final = 600_000
"""`45009` (daily quota spent) is retried, but not soon: the least `retry_after_ms` hint it carries."""

NORMAL_LABEL: Final = "100"
SUGGEST_KEYS: Final = ("suggest", "sugguest", "suggestion")  # the docs misspell the key
SUGGESTIONS: Final[Mapping[str, Decision]] = {
    "pass": Decision.PASS,
    "risky": Decision.REJECT,
    "risk": Decision.REJECT,
    "review": Decision.REVIEW,
}
SEVERITY: Final[Mapping[Decision, int]] = {Decision.PASS: 0, Decision.REVIEW: 1, Decision.REJECT: 2}
_ERRCODE = re.compile(r"-?\d+")


class _Malformed(ValueError):
    """A result whose shape breaks the documented contract."""


class WechatModeration(AppClient):
    """The WeChat text (sync) and image (push) checks behind the one moderation contract."""

    name = VENDOR

    def __init__(
        self,
        http: httpx.Client,
        *,
        appid: str,
        secret: str,
        openid: str,
        push_token: str,
        tokens: TokenCache,
        scene: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (appid and secret and openid and push_token):
            raise ValueError("wechat appid, secret, openid and push_token are all required")
        if scene not in (1, 2, 3, 4):
            raise ValueError(f"wechat scene must be 1..4, got {scene!r}")
        super().__init__(http, appid=appid, secret=secret, tokens=tokens, clock=clock)
        self._openid = openid
        self._push_token = push_token
        self._scene = scene

    def __repr__(self) -> str:
        return f"WechatModeration(appid={self._appid!r}, secret='****')"

    def submit(self, item: CheckItem, *, reference: str) -> Submission:
        """Text: the verdict in the call. Image: the trace id only; the verdict comes by push."""
        if item.kind is ItemKind.TEXT:
            return self._check_text(item.content)
        if item.kind is ItemKind.IMAGE:
            return self._check_image(item.content)
        raise VendorRejected(VENDOR, "unsupported_kind", str(item.kind))

    def query(self, platform_task_id: str) -> Verdict | None:
        """WeChat offers no query for media checks: always None (genq submits the item again)."""
        return None

    def parse_push(self, push: PushRequest) -> tuple[list[tuple[str, Verdict]], PushAnswer]:
        """GET = URL verification (answer `echostr`); POST = a `wxa_media_check` event (answer
        `success`). Other genuine events on the same URL yield no events. Raises `PushRejected`:
        missing_signature, bad_signature, malformed, stale (> 300 s off the clock), wrong_appid,
        encrypted_unsupported."""
        method = push.method.upper()
        if method not in ("GET", "POST"):
            raise PushRejected("malformed")
        self._verify(push.query)
        if method == "GET":
            echostr = push.query.get("echostr")
            if not echostr:
                raise PushRejected("malformed")
            return [], PushAnswer(200, echostr)
        return self._events(push.body), PushAnswer(200, "success")

    # --- checks -----------------------------------------------------------------------------------

    def _check_text(self, text: str) -> Submission:
        checked: list[tuple[str, Verdict]] = []
        for chunk in text_chunks(text):
            body = {"version": 2, "openid": self._openid, "scene": self._scene, "content": chunk}
            answer = self._call(TEXT_PATH, body)
            try:
                checked.append((_trace_id(answer), verdict_of(answer)))
            except _Malformed as exc:
                raise VendorProtocolError(VENDOR, "bad_result", str(exc)) from None
            if checked[-1][1].decision is Decision.REJECT:
                break
        return worst(checked)

    def _check_image(self, url: str) -> Submission:
        if not url.startswith(("https://", "http://")):
            raise VendorRejected(VENDOR, "bad_media_url", "the image must be a public http(s) URL")
        body = {"media_url": url, "media_type": 2, "version": 2, "openid": self._openid, "scene": self._scene}
        answer = self._call(MEDIA_PATH, body)
        try:
            return Submission(_trace_id(answer))
        except _Malformed as exc:
            raise VendorProtocolError(VENDOR, "bad_result", str(exc)) from None

    # --- calls, tokens, errcodes ------------------------------------------------------------------

    def _call(self, path: str, body: Mapping[str, object]) -> dict[str, object]:
        """POST with the token in the query; on a token errcode refresh once and repeat the call."""
        answer = self._post(path, self._access_token(), body)
        if _errcode(answer) in TOKEN_ERRCODES:
            self._tokens.delete(self._token_key)
            answer = self._post(path, self._fetch_token(), body)
        self._raise_for_errcode(answer)
        return answer

    def _post(self, path: str, token: str, body: Mapping[str, object]) -> dict[str, object]:
        return self._request("POST", path, {"access_token": token}, dict(body))

    def _access_token(self) -> str:
        return self._cached_token() or self._fetch_token()

    def _fetch_token(self) -> str:
        """A fresh token from `/cgi-bin/token`, stored with ttl `expires_in` minus a margin."""
        params = {"grant_type": "client_credential", "appid": self._appid, "secret": self._secret}
        answer = self._request("GET", TOKEN_PATH, params)
        self._raise_for_errcode(answer)
        token, expires_in = answer.get("access_token"), answer.get("expires_in", 7200)
        if not isinstance(token, str) or not token:
            raise VendorProtocolError(VENDOR, "missing_access_token")
        self._remember(token)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise VendorProtocolError(VENDOR, "bad_expires_in", type(expires_in).__name__)
        self._keep_token(token, expires_in)
        return token

    def _request(
        self, method: str, path: str, params: Mapping[str, str], body: dict[str, object] | None = None
    ) -> dict[str, object]:
        """One call; the JSON object answer, or the bucket of a transport / HTTP / format failure."""
        resp = self._exchange(method, path, params=params, json=body)
        if resp.is_error:
            raise VendorRejected(VENDOR, f"http_{resp.status_code}", self._scrub(resp.text)[:200])
        answer = json_answer(VENDOR, resp, self._scrub)
        if not isinstance(answer, dict) or _errcode(answer) is None:
            raise VendorProtocolError(VENDOR, "bad_answer", self._scrub(str(answer))[:120])
        return answer

    def _raise_for_errcode(self, answer: Mapping[str, object]) -> None:
        code = _errcode(answer)
        if not code:
            return
        stable, detail = f"wechat_{code}", self._scrub(str(answer.get("errmsg") or ""))[:200]
        if code in UNAVAILABLE_ERRCODES:
            hint = QUOTA_RETRY_MS if code == 45009 else None
            raise VendorUnavailable(VENDOR, stable, detail, retry_after_ms=hint)
        raise VendorRejected(VENDOR, stable, detail)

    # --- pushes (VENDORS.md §5.4, §5.5) -------------------------------------------------------------

    def _verify(self, query: Mapping[str, str]) -> None:
        """The signature first (constant time), then the clock: `stale` means genuine but late."""
        signature, timestamp, nonce = query.get("signature"), query.get("timestamp"), query.get("nonce")
        if not signature or not timestamp or not nonce:
            raise PushRejected("missing_signature")
        expected = push_signature(self._push_token, timestamp, nonce)
        if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
            raise PushRejected("bad_signature")
        if not timestamp.strip().isdigit():
            raise PushRejected("malformed")
        if abs(self._clock() - int(timestamp)) > PUSH_WINDOW_S:
            raise PushRejected("stale")

    def _events(self, body: bytes) -> list[tuple[str, Verdict]]:
        try:
            payload = json.loads(body)
        except ValueError:
            raise PushRejected("malformed") from None
        if not isinstance(payload, dict):
            raise PushRejected("malformed")
        if "Encrypt" in payload:
            raise PushRejected("encrypted_unsupported")
        if payload.get("MsgType") != "event" or payload.get("Event") != PUSH_EVENT:
            return []  # another kind of message pushed to the same URL: genuine, not ours
        appid = payload.get("appid")
        if appid is not None and appid != self._appid:
            raise PushRejected("wrong_appid")
        try:
            return [(_trace_id(payload), failure_of(payload) or verdict_of(payload))]
        except _Malformed:
            raise PushRejected("malformed") from None


# --- pure helpers ---------------------------------------------------------------------------------


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    """SHA-1 hex of the lexicographically sorted `[token, timestamp, nonce]`, concatenated."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode(), usedforsecurity=False).hexdigest()


def text_chunks(text: str, limit: int = TEXT_LIMIT, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """`text` itself when it fits; else windows of `limit` characters, each starting `overlap`
    characters before the previous one ended, the last one reaching the end."""
    if len(text) <= limit:
        return [text]
    step = limit - overlap
    return [text[start : start + limit] for start in range(0, len(text) - overlap, step)]


def verdict_of(payload: Mapping[str, object]) -> Verdict:
    """The v2 verdict of a `msgSecCheck` answer or a `wxa_media_check` push.

    decision: `result.suggest` (pass / risky / review; the key's and values' known misspellings
    and any case accepted); anything else is `_Malformed`.
    labels: `result.label` unless the decision is pass, then the label of every `detail` entry
    whose own suggest is risky or review; numbers and strings alike become strings, `100` (normal)
    is never a label. Entries with a nonzero `errcode` (that strategy failed) are ignored.
    confidence (see `confidence_of`): `detail[].prob` (0..100) scaled to 0..1.
    """
    result = payload.get("result")
    if not isinstance(result, Mapping):
        raise _Malformed("no result object")
    decision = _decision(result)
    if decision is None:
        raise _Malformed("result.suggest is missing or unknown")
    detail = payload.get("detail", [])
    if not isinstance(detail, list):
        raise _Malformed("detail is not a list")
    entries = [d for d in detail if isinstance(d, Mapping) and _errcode(d) in (0, None)]
    fired = [_label(d.get("label")) for d in entries if _decision(d) not in (None, Decision.PASS)]
    labels = [_label(result.get("label"))] if decision is not Decision.PASS else []
    unique = dict.fromkeys(label for label in (*labels, *fired) if label and label != NORMAL_LABEL)
    return Verdict(decision, confidence_of(decision, entries), tuple(unique), raw=dict(payload))


def failure_of(payload: Mapping[str, object]) -> Verdict | None:
    """A media check WeChat could not carry out: a nonzero `errcode` (e.g. `-1008`, the image could
    not be downloaded) and no `result`. The verdict `failed` (confidence 0, no labels); else None."""
    if "result" in payload or not _errcode(payload):
        return None
    return Verdict(Decision.FAILED, 0.0, (), raw=dict(payload))


def confidence_of(decision: Decision, entries: list[Mapping[str, object]]) -> float:
    """How sure WeChat is of `decision`, 0..1, from the `prob` (0..100) of the detail entries.

    reject / review: the highest prob among entries that voted for that same decision with a risk
    label (the strongest model behind it); none carries a prob (a keyword or policy hit) -> 1.0.
    pass: every entry with a prob is read as P(normal) -- prob itself for label 100, 1 - prob for a
    risk label the model scored below its bar -- and the lowest wins (the least sure model); no prob
    anywhere -> 1.0.
    """
    if decision is Decision.PASS:
        normal = [
            prob if _label(d.get("label")) == NORMAL_LABEL else 1 - prob
            for d in entries
            if (prob := _prob(d)) is not None
        ]
        return min(normal, default=1.0)
    votes = [
        prob
        for d in entries
        if _decision(d) is decision and _label(d.get("label")) != NORMAL_LABEL and (prob := _prob(d)) is not None
    ]
    return max(votes, default=1.0)


def worst(checked: list[tuple[str, Verdict]]) -> Submission:
    """One submission for the chunks of one text: the most severe decision, its chunk's trace id,
    the confidence of the deciding chunk (highest for reject/review, lowest for pass), every label,
    and every chunk's answer under `raw["chunks"]`."""
    if len(checked) == 1:
        return Submission(*checked[0])
    top = max(SEVERITY[v.decision] for _, v in checked)
    same = [(t, v) for t, v in checked if SEVERITY[v.decision] == top]
    pick = min if same[0][1].decision is Decision.PASS else max
    trace_id, decider = pick(same, key=lambda tv: tv[1].confidence)
    labels = tuple(dict.fromkeys(label for _, v in checked for label in v.labels))
    raw = {"trace_ids": [t for t, _ in checked], "chunks": [dict(v.raw) for _, v in checked]}
    return Submission(trace_id, Verdict(decider.decision, decider.confidence, labels, raw))


def _trace_id(payload: Mapping[str, object]) -> str:
    trace_id = payload.get("trace_id") or payload.get("traceId")  # the cloud-function variant
    if not isinstance(trace_id, str) or not trace_id:
        raise _Malformed("no trace_id")
    return trace_id


def _decision(entry: Mapping[str, object]) -> Decision | None:
    value = next((entry[key] for key in SUGGEST_KEYS if key in entry), None)
    return SUGGESTIONS.get(value.strip().lower()) if isinstance(value, str) else None


def _label(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, str):
        return value.strip() or None
    return None


def _prob(entry: Mapping[str, object]) -> float | None:
    """`prob` as 0..1 (numbers or numeric strings, clamped); anything else is no prob."""
    value = entry.get("prob")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(max(float(value), 0.0), 100.0) / 100


def _errcode(answer: Mapping[str, object]) -> int | None:
    """`errcode` as an int; absent -> 0 (a token answer has none); not a number -> None."""
    code = answer.get("errcode", 0)
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    return int(code) if isinstance(code, str) and _ERRCODE.fullmatch(code.strip()) else None
