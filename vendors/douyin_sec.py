"""Douyin (ByteDance) mini-app content security (VENDORS.md §5.6): the only module that knows its
paths, envelopes and codes, behind `vendors.moderation.ModerationPlatform`.

The classic set on one host (`https://developer.toutiao.com`, or the simulator: only the caller's
`httpx.Client` base_url differs):

- token `POST /api/apps/v2/token` `{appid, secret, grant_type}` -> `{err_no, err_tips, data:
  {access_token, expires_in}}`; kept in the shared `TokenCache` under `douyin:access_token:<appid>`
  for `expires_in` minus `vendors.moderation.TOKEN_MARGIN_S`. Fetching a new token cuts the previous one to 5 minutes,
  so a refused token is dropped only if the cache still holds it (another process may have
  refreshed already), and a check is retried once with a fresh token.
- text `POST /api/v2/tags/text/antidirt`, token in header `X-Token`, `{tasks: [{content}]}`.
- image v2 `POST /api/apps/censor/image`, `{app_id, access_token, image: <URL>}` (token in the body).

The newer `open.douyin.com` endpoints (`/api/apps/v1/censor/text/`, `/api/apps/v1/censor/image/`:
`access-token` header, a `clt.` client token, `{err_no, err_msg, log_id, ...}`) live on another
host with another token; they are not used here (the simulator answers them for completeness).

Every Douyin check answers in the call: `submit()` returns the verdict with the task id. Douyin
documents no push and no query API: `parse_push()` refuses every request with
`PushRejected("no_push")` and `query()` is always None (genq's fallback submits again).

Verdicts [I]: any prediction with `hit` -> REJECT (labels: the hit `model_name`s, confidence: their
highest `prob`, else 1.0). No hit but a `prob` above `REVIEW_BAND` -> REVIEW (confidence: that
prob); otherwise PASS with confidence 1 - the highest prob (1.0 without probs). Douyin never says
"review" itself. `prob` is read as a fraction when every prob in the answer is <= 1 (the classic
docs give 0 or 1) and as a percentage when any exceeds 1. A prediction without `hit` (the old
classic text answer) counts as a hit when its prob is 1.

The secret and access tokens travel only in the request and never appear in an exception.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeGuard

import httpx

from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
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
from vendors.plumbing import mask

VENDOR: Final = "douyin"
TOKEN_PATH: Final = "/api/apps/v2/token"  # noqa: S105 (a path, not a password)
TEXT_PATH: Final = "/api/v2/tags/text/antidirt"
IMAGE_PATH: Final = "/api/apps/censor/image"
REVIEW_BAND: Final = 0.5
"""[I] A prediction that did not hit but has a prob above this makes the verdict REVIEW."""

TEXT_AUTH_CODE: Final = 401
IMAGE_AUTH_ERROR: Final = 2
IMAGE_ERRORS: Final[Mapping[int, tuple[type[VendorError], str]]] = {
    1: (VendorRejected, "douyin_image_1"),  # bad parameters
    3: (VendorRejected, "douyin_image_unreachable"),  # Douyin could not download the image
    4: (VendorUnavailable, "douyin_image_4"),  # internal error: retry
}
"""Image v2 `error` -> bucket and stable code; an unlisted error is `douyin_image_<n>`, permanent."""
TOKEN_BUSY: Final = -1  # token `err_no` "system error": retry; every other err_no is configuration
_ENVELOPE_KEYS: Final = ("code", "error", "err_no", "data")


class _AuthRefused(Exception):
    """The token was refused: drop it, fetch another, retry once."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class DouyinModeration(AppClient):
    """Douyin text and image checks; verdicts come back in the call (see the module docstring)."""

    name = VENDOR

    def __init__(
        self,
        http: httpx.Client,
        *,
        appid: str,
        secret: str,
        tokens: TokenCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not appid or not secret:
            raise ValueError("douyin appid and secret must be set")
        super().__init__(http, appid=appid, secret=secret, tokens=tokens, clock=clock)

    def __repr__(self) -> str:
        return f"DouyinModeration(appid={self._appid!r}, secret={mask(self._secret)!r})"

    # --- ModerationPlatform -----------------------------------------------------------------------

    def submit(self, item: CheckItem, *, reference: str) -> Submission:
        """Check now; the verdict is in the `Submission`. `reference` is not sent (Douyin has no
        field for it). An image must be an http(s) URL Douyin can download."""
        if item.kind is ItemKind.IMAGE and not item.content.startswith(("http://", "https://")):
            raise VendorRejected(VENDOR, "douyin_bad_image_url", "image must be an http(s) URL")
        check = self._check_text if item.kind is ItemKind.TEXT else self._check_image
        token = self._token()
        try:
            return check(token, item.content)
        except _AuthRefused:
            self._drop(token)
        try:
            return check(self._token(), item.content)
        except _AuthRefused as exc:
            raise VendorRejected(VENDOR, exc.code, "access token refused after a refresh") from None

    def query(self, platform_task_id: str) -> Verdict | None:
        """Douyin offers no query API: always None."""
        return None

    def parse_push(self, push: PushRequest) -> tuple[list[tuple[str, Verdict]], PushAnswer]:
        """Douyin documents no moderation push: whatever arrives is not from Douyin."""
        raise PushRejected("no_push")

    # --- checks -----------------------------------------------------------------------------------

    def _check_text(self, token: str, content: str) -> Submission:
        body = self._post(TEXT_PATH, {"tasks": [{"content": content}]}, headers={"X-Token": token})
        code = body.get("code")
        if _is_int(code) and code != 0:
            raise self._text_error(code, body)
        task = _first_task(body.get("data"))
        if _is_int(task.get("code")) and task["code"] != 0:
            detail = self._scrub(str(task.get("msg") or ""))[:300]
            raise VendorRejected(VENDOR, f"douyin_task_{task['code']}", detail)
        task_id = _str(task.get("task_id")) or _str(body.get("log_id")) or self._new_id()
        return Submission(task_id, verdict_of(_predicts(task), raw=body))

    def _check_image(self, token: str, url: str) -> Submission:
        body = self._post(IMAGE_PATH, {"app_id": self._appid, "access_token": token, "image": url})
        error = body.get("error")
        if not _is_int(error):
            raise VendorProtocolError(VENDOR, "bad_answer", f"image answer without `error`: {sorted(body)}")
        if error == IMAGE_AUTH_ERROR:
            raise _AuthRefused(f"douyin_image_{error}")
        if error != 0:
            bucket, code = IMAGE_ERRORS.get(error, (VendorRejected, f"douyin_image_{error}"))
            raise bucket(VENDOR, code, self._scrub(str(body.get("message") or ""))[:300])
        task_id = _str(body.get("log_id")) or self._new_id()  # v2 answers carry no id [C]
        return Submission(task_id, verdict_of(_predicts(body), raw=body))

    def _text_error(self, code: int, body: Mapping[str, Any]) -> Exception:
        if code == TEXT_AUTH_CODE:
            return _AuthRefused(f"douyin_{code}")
        detail = self._scrub(str(body.get("message") or ""))[:300]
        if code >= 500:  # [I] undocumented: a server-side code is worth another try
            return VendorUnavailable(VENDOR, f"douyin_{code}", detail)
        return VendorRejected(VENDOR, f"douyin_{code}", detail)

    # --- token ------------------------------------------------------------------------------------

    def _token(self) -> str:
        cached = self._cached_token()
        if cached:
            return cached
        payload = {"appid": self._appid, "secret": self._secret, "grant_type": "client_credential"}
        body = self._post(TOKEN_PATH, payload)
        err_no = body.get("err_no")
        if not _is_int(err_no):
            raise VendorProtocolError(VENDOR, "bad_token_answer", f"token answer without `err_no`: {sorted(body)}")
        if err_no != 0:
            detail = self._scrub(str(body.get("err_tips") or ""))[:300]
            bucket = VendorUnavailable if err_no == TOKEN_BUSY else VendorRejected
            raise bucket(VENDOR, f"douyin_token_{err_no}", detail)
        data = body.get("data")
        if not isinstance(data, dict):
            data = {}
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not _is_number(expires_in):
            raise VendorProtocolError(VENDOR, "bad_token_answer", f"data fields: {sorted(data)}")
        self._keep_token(token, expires_in)
        return token

    def _drop(self, token: str) -> None:
        """Forget a refused token, unless another process already replaced it."""
        if self._tokens.get(self._token_key) == token:
            self._tokens.delete(self._token_key)

    # --- one call ---------------------------------------------------------------------------------

    def _post(
        self, path: str, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """POST JSON; return the JSON object answer, or raise the bucket of a failed exchange."""
        resp = self._exchange("POST", path, json=payload, headers=headers)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and (not resp.is_error or any(k in body for k in _ENVELOPE_KEYS)):
            return body  # Douyin's errors are JSON bodies (documented with HTTP 200)
        if resp.is_error:
            raise VendorRejected(VENDOR, f"http_{resp.status_code}", self._scrub(resp.text)[:300])
        raise VendorProtocolError(VENDOR, "not_json", self._scrub(resp.text)[:120])

    def _new_id(self) -> str:
        """An id for an answer that carries none: unique, and fixed once returned."""
        return f"douyin-{round(self._clock() * 1000)}-{uuid.uuid4().hex[:16]}"

    def _shown(self, secret: str) -> str:
        return mask(secret)


# --- verdicts -------------------------------------------------------------------------------------


def verdict_of(predicts: list[Mapping[str, Any]], *, raw: Mapping[str, object]) -> Verdict:
    """Douyin's predictions -> one Verdict (the rules are in the module docstring)."""
    scale = 100.0 if any(_is_number(p.get("prob")) and p["prob"] > 1 for p in predicts) else 1.0
    hits: list[tuple[str, float | None]] = []
    suspects: list[tuple[str, float]] = []
    highest = 0.0
    for predict in predicts:
        prob = min(max(predict["prob"] / scale, 0.0), 1.0) if _is_number(predict.get("prob")) else None
        label = _str(predict.get("model_name")) or _str(predict.get("target")) or "unknown"
        if _hit(predict.get("hit"), prob):
            hits.append((label, prob))
        elif prob is not None:
            highest = max(highest, prob)
            if prob > REVIEW_BAND:
                suspects.append((label, prob))
    if hits:
        probs = [p for _, p in hits if p is not None]
        return Verdict(Decision.REJECT, max(probs, default=1.0), _labels(hits), raw)
    if suspects:
        return Verdict(Decision.REVIEW, max(p for _, p in suspects), _labels(suspects), raw)
    return Verdict(Decision.PASS, 1.0 - highest, (), raw)


def _hit(hit: object, prob: float | None) -> bool:
    if isinstance(hit, bool):
        return hit
    if isinstance(hit, int):
        return hit == 1  # some answers say `1`
    return prob is not None and prob >= 1.0  # classic text without `hit`: prob 1 = violation


def _labels(found: Sequence[tuple[str, object]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(label for label, _ in found))


# --- wire helpers ---------------------------------------------------------------------------------


def _first_task(data: object) -> Mapping[str, Any]:
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise VendorProtocolError(VENDOR, "bad_answer", f"text answer `data` is {type(data).__name__}")
    task: Mapping[str, Any] = data[0]
    return task


def _predicts(answer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    predicts = answer.get("predicts")
    if not isinstance(predicts, list) or not all(isinstance(p, dict) for p in predicts):
        raise VendorProtocolError(VENDOR, "bad_predicts", f"`predicts` is {type(predicts).__name__}")
    return predicts


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


if TYPE_CHECKING:
    from vendors.moderation import ModerationPlatform

    _CONFORMS: type[ModerationPlatform] = DouyinModeration
