"""KIE.ai Sora 2 / Sora 2 Pro client (VENDORS.md §4): the only module that knows KIE's paths and codes.

Answers are (mostly) HTTP 200 with `{code, msg, data}`; the body's `code` is classified by one table
(`BUCKETS`) into the error buckets of `vendors.base`. createTask and recordInfo answers carry their
text in `message` where callbacks say `msg`: either is read (both, when both are set). The same code
runs against the real host and the simulator: only the caller's `httpx.Client` base_url differs.

KIE has no idempotency key and no cancel: our job id travels as `X-Request-Id` for correlation
only, so a retried `submit` after a lost answer may start a second task; such a `submit` raises
`VendorOutcomeUnknown` (`vendors.base.transport_error`). `cancel` is a no-op and `can_cancel` is
False. The API key travels as `Authorization: Bearer` only and never appears in an exception.

Callbacks (§4.5) are hints: `verify_callback` checks the optional HMAC and names the task, whose
state the caller then re-reads with `poll`. KIE signs only `taskId.timestamp`, not the body, so a
verified body still proves nothing about the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from vendors.base import (
    Done,
    Failed,
    MessageRejected,
    PollOutcome,
    Running,
    VendorBusy,
    VendorError,
    VendorExpired,
    VendorFile,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
    request_as,
)
from vendors.plumbing import Envelope, EnvelopeClient

VENDOR: Final = "kie"
CREATE_PATH: Final = "/api/v1/jobs/createTask"
RECORD_PATH: Final = "/api/v1/jobs/recordInfo"

BUCKETS: Final[Mapping[int, type[VendorError]]] = {
    **dict.fromkeys((401, 402, 422, 501, 505), VendorRejected),
    **dict.fromkeys((455, 500), VendorUnavailable),
    429: VendorBusy,  # a rate limit is back-pressure (SPEC §6): excess requests are rejected, not queued
    404: VendorExpired,  # on recordInfo only; on createTask a 404 is permanent (`_body_error`)
    409: VendorBusy,  # [I] KIE documents no concurrency answer; the simulator's cap says 409 "queue full"
}
"""Envelope code -> bucket (VENDORS.md §4.4, §10). A code not listed is permanent (VendorRejected)."""

BUSY_MESSAGE: Final = "queue full"
"""[I] Whatever its code, an answer whose text (`msg` or `message`) says this is back-pressure (VendorBusy)."""

MAINTENANCE_RETRY_MS: Final = 60_000
"""455 (maintenance) is retried, but not soon: the least `retry_after_ms` hint it carries."""

SIZES: Final[Mapping[tuple[str, str], str | None]] = {
    ("sora-2", "720p"): None,
    ("sora-2-pro", "720p"): "standard",
    ("sora-2-pro", "1080p"): "high",
}
"""(model, resolution) -> `input.size` [I: VENDORS.md §4.2]; a pair not listed cannot be asked for."""

N_FRAMES: Final[Mapping[int, str]] = {10: "10", 15: "15"}
RUNNING_STATES: Final = frozenset({"waiting", "queuing", "generating"})


@dataclass(frozen=True)
class VideoRequest:
    """One Sora clip: `model` `sora-2` | `sora-2-pro`; `resolution` `720p` | `1080p` (pro only);
    `duration` 10 | 15 seconds; an `image_url` makes it image-to-video."""

    model: str
    resolution: str
    duration: int
    prompt: str
    image_url: str | None = None
    aspect_ratio: str = "landscape"


class CallbackRejected(MessageRejected):
    """A callback that must not be trusted; `reason` is stable: missing_signature, bad_signature,
    stale_timestamp or malformed."""

    what = "kie callback"


class KieClient(EnvelopeClient):
    """The KIE Sora surface the generation, polling and archiving workers use."""

    name = VENDOR
    can_cancel = False  # KIE documents no cancel (VENDORS.md §4)
    text_fields = ("msg", "message")

    def __init__(self, http: httpx.Client, *, api_key: str, callback_url: str | None = None) -> None:
        super().__init__(http, api_key=api_key)
        self._callback_url = callback_url

    def submit(self, request: object, *, idempotency_key: str) -> str:
        """Start the `VideoRequest`; return KIE's `task_<model>_<ms>` id. Not deduped by the vendor.

        A combination KIE cannot express (sora-2 at 1080p) is `VendorRejected("unsupported_request")`
        before any call: sending it as 720p would silently downgrade a paid job.
        """
        body = _create_body(request_as(request, VideoRequest, self), self._callback_url)
        headers = {"X-Request-Id": idempotency_key}
        env = self._call("POST", CREATE_PATH, body=body, headers=headers, creates=True)
        task_id = env.data.get("taskId") if isinstance(env.data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise VendorProtocolError(VENDOR, "missing_taskId", f"data={type(env.data).__name__}")
        return task_id

    def poll(self, task_id: str) -> PollOutcome:
        """waiting/queuing/generating -> `Running(state)`; success/fail -> `Done`/`Failed`;
        unknown id -> `VendorExpired`."""
        env = self._call("GET", RECORD_PATH, params={"taskId": task_id})
        state = env.data.get("state") if isinstance(env.data, dict) else None
        if state in RUNNING_STATES:
            return Running(stage=str(state))
        if state == "success":
            return Done(files=_files(env.data))
        if state == "fail":
            return self._failure(env.data)
        raise VendorProtocolError(VENDOR, "bad_state", self._scrub(repr(state))[:120])

    def cancel(self, task_id: str) -> None:
        """KIE offers no cancel: the task runs to its end and is charged. Deliberately a no-op (not an
        exception: callers that stop a job on our side call it as best effort); `can_cancel` is False."""

    # --- one call, classified ---------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, object] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        creates: bool = False,
    ) -> Envelope:
        """One authenticated call; return the envelope when its code is 200, else raise its bucket."""
        env = self._send(method, path, json=body, params=params, headers=headers, creates=creates)
        if env.code != 200:
            raise self._body_error(env, querying=path == RECORD_PATH)
        return env

    def _body_error(self, env: Envelope, *, querying: bool) -> VendorError:
        code, detail = f"kie_{env.code}", self._scrub(env.msg)[:300]
        bucket = VendorBusy if BUSY_MESSAGE in env.msg.lower() else BUCKETS.get(env.code, VendorRejected)
        if bucket is VendorBusy:
            return VendorBusy(VENDOR, code, detail, retry_after_ms=env.retry_after_ms)
        if bucket is VendorExpired and not querying:
            bucket = VendorRejected  # "not found" on createTask: a wrong path or model, never a task
        if bucket is VendorUnavailable:
            hint = env.retry_after_ms
            if env.code == 455:
                hint = max(hint or 0, MAINTENANCE_RETRY_MS)
            return VendorUnavailable(VENDOR, code, detail, retry_after_ms=hint)
        return bucket(VENDOR, code, detail)

    def _text(self, body: Mapping[str, object]) -> str:
        """The answer's text: `msg` (callbacks), `message` (createTask, recordInfo), or both, joined."""
        texts = (body.get("msg"), body.get("message"))
        return "; ".join(dict.fromkeys(t.strip() for t in texts if isinstance(t, str) and t.strip()))

    def _failure(self, data: object) -> Failed:
        """`fail` with a `failCode` -> `kie_<failCode>`; without one -> `vendor_task_failed`."""
        fail_code = data.get("failCode") if isinstance(data, dict) else None
        fail_msg = data.get("failMsg") if isinstance(data, dict) else None
        tag = "".join(c for c in str(fail_code or "") if c.isalnum() or c in "_-.")[:40]
        message = self._scrub(fail_msg if isinstance(fail_msg, str) else "")[:300]
        return Failed(f"kie_{tag}" if tag else "vendor_task_failed", message)


# --- wire shapes ----------------------------------------------------------------------------------


def _create_body(request: VideoRequest, callback_url: str | None) -> dict[str, object]:
    """The createTask body (VENDORS.md §4.2); a combination KIE cannot express is rejected here."""
    variant = (request.model, request.resolution)
    if variant not in SIZES or request.duration not in N_FRAMES:
        detail = f"{request.model} {request.resolution} {request.duration}s is not offered"
        raise VendorRejected(VENDOR, "unsupported_request", detail)
    kind = "image-to-video" if request.image_url else "text-to-video"
    params: dict[str, object] = {
        "prompt": request.prompt,
        "aspect_ratio": request.aspect_ratio,
        "n_frames": N_FRAMES[request.duration],
    }
    if request.image_url:
        params["image_urls"] = [request.image_url]
    size = SIZES[variant]
    if size is not None:
        params["size"] = size
    body: dict[str, object] = {"model": f"{request.model}-{kind}", "input": params}
    if callback_url:
        body["callBackUrl"] = callback_url
    return body


def _files(data: object) -> tuple[VendorFile, ...]:
    """`resultJson` is a JSON *string* holding `{"resultUrls": [...]}`: parse it a second time."""
    raw = data.get("resultJson") if isinstance(data, dict) else None
    try:
        result = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise VendorProtocolError(VENDOR, "bad_resultJson", "not JSON") from None
    urls = result.get("resultUrls") if isinstance(result, dict) else None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise VendorProtocolError(VENDOR, "missing_resultUrls", f"resultJson={type(result).__name__}")
    return tuple(VendorFile(url=url, content_type="video/mp4", ext="mp4") for url in urls)


# --- callbacks (VENDORS.md §4.5) ------------------------------------------------------------------


def callback_signature(task_id: str, timestamp: str, *, hmac_key: str) -> str:
    """base64(HMAC-SHA256(key, f"{task_id}.{timestamp}")), as KIE sends in `X-Webhook-Signature`."""
    digest = hmac.new(hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_callback(
    headers: Mapping[str, str], body: bytes, *, hmac_key: str, now: float, window_s: float = 300
) -> str:
    """The task id of a genuine, fresh callback; anything else raises `CallbackRejected`.

    The id is `data.taskId` or `data.task_id` (KIE's sample and its payloads disagree). The
    signature is compared in constant time before the timestamp is judged, so `stale_timestamp`
    means a genuine but late (or replayed) delivery.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signature, timestamp = lowered.get("x-webhook-signature"), lowered.get("x-webhook-timestamp")
    if not signature or not timestamp:
        raise CallbackRejected("missing_signature")
    task_id = _callback_task_id(body)
    if not timestamp.strip().isdigit():
        raise CallbackRejected("malformed")
    expected = callback_signature(task_id, timestamp.strip(), hmac_key=hmac_key)
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        raise CallbackRejected("bad_signature")
    if abs(now - int(timestamp)) > window_s:
        raise CallbackRejected("stale_timestamp")
    return task_id


def _callback_task_id(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        raise CallbackRejected("malformed") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    task_id = (data.get("taskId") or data.get("task_id")) if isinstance(data, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise CallbackRejected("malformed")
    return task_id
