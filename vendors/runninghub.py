"""RunningHub legacy OpenAPI client (VENDORS.md §3): the only module that knows its paths and codes.

Every answer is HTTP 200 with `{code, msg, data}`; the outcome is the body's `code`, classified by
one table (`BUCKETS`) into the error buckets of `vendors.base`. The same code runs against the real
host and the simulator: only the caller's `httpx.Client` base_url differs.

RunningHub has no idempotency key and does not dedupe submissions: our job id travels as
`X-Request-Id` for correlation only, so a retried `submit` after a lost answer may start a second
vendor task. A `submit` whose answer may have been lost therefore raises `VendorOutcomeUnknown`, not
`VendorUnavailable` (`vendors.base.transport_error`). The API key is sent as body `apiKey` and as
`Authorization: Bearer`; it never appears in an exception (at most as `****` + its last four
characters).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

import httpx

from vendors.base import (
    Done,
    Failed,
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

VENDOR: Final = "runninghub"

BUCKETS: Final[Mapping[int, type[VendorError]]] = {
    **dict.fromkeys((421, 415, 814, 1520, 1011, 1003), VendorBusy),  # 1003: a rate limit is back-pressure
    **dict.fromkeys((500, 808), VendorUnavailable),
    **dict.fromkeys((807, 423), VendorExpired),
    **dict.fromkeys((301, 380, 433, 801, 802, 803, 806, 809, 811, 812, 901), VendorRejected),
}
"""Envelope code -> bucket (VENDORS.md §3.4, §10). A code not listed is permanent (VendorRejected)."""

PENDING: Final[Mapping[int, str]] = {813: "queued", 804: "running"}
"""`/outputs` codes that mean "not finished yet" -> `Running.stage`."""

CONTENT_TYPES: Final[Mapping[str, str]] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "mp4": "video/mp4",
}

_TASK_FAILED: Final = 805
_POLL_ANSWERS: Final = frozenset({0, _TASK_FAILED, *PENDING})
_CANCEL_ANSWERS: Final = frozenset({0, 807, 423})
"""`/cancel` codes that leave nothing running: done, or the id is unknown/expired (nothing to stop)."""


@dataclass(frozen=True)
class NodeValue:
    """One `nodeInfoList` entry: set `field_name` of workflow node `node_id` to `field_value`."""

    node_id: str
    field_name: str
    field_value: str


@dataclass(frozen=True)
class AppRun:
    """A run of a RunningHub AI app (webapp); `instance_type` is `default` (24 GB) or `plus` (48 GB)."""

    webapp_id: int
    nodes: tuple[NodeValue, ...]
    instance_type: str = "default"


class RunningHubClient(EnvelopeClient):
    """The RunningHub AI-app surface the generation, polling and archiving workers use."""

    name = VENDOR
    can_cancel = True  # POST /task/openapi/cancel (VENDORS.md §3.2)

    def __init__(self, http: httpx.Client, *, api_key: str, webhook_url: str | None = None) -> None:
        super().__init__(http, api_key=api_key)
        self._webhook_url = webhook_url

    def submit(self, request: object, *, idempotency_key: str) -> str:
        """Start the `AppRun`; return RunningHub's 19-digit task id. Not deduped by the vendor."""
        headers = {"X-Request-Id": idempotency_key}
        body = _run_body(request_as(request, AppRun, self), self._webhook_url)
        env = self._post("/task/openapi/ai-app/run", body, headers=headers, creates=True)
        task_id = _task_id(env.data)
        errors = _node_errors(env.data)
        if errors:
            self._cancel_quietly(task_id)  # the vendor took it anyway: don't let it burn a slot
            raise VendorRejected(VENDOR, "node_errors", self._scrub(errors)[:300])
        return task_id

    def poll(self, task_id: str) -> PollOutcome:
        """Queued/running -> `Running(stage)`; finished -> `Done`/`Failed`; gone -> `VendorExpired`."""
        env = self._post("/task/openapi/outputs", {"taskId": task_id}, accept=_POLL_ANSWERS)
        if env.code in PENDING:
            return Running(stage=PENDING[env.code])
        if env.code == _TASK_FAILED:
            return _failure(env.data)
        return Done(files=_files(env.data))

    def cancel(self, task_id: str) -> None:
        """Ask RunningHub to stop the task. A finished task, or an id RunningHub no longer knows
        (`807`, `423`), leaves nothing to stop: that is success too. Safe to repeat."""
        self._post("/task/openapi/cancel", {"taskId": task_id}, accept=_CANCEL_ANSWERS)

    def account_status(self) -> dict[str, object]:
        """`remainCoins`, `currentTaskCounts`, `remainMoney`, `currency`, `apiType` as sent."""
        env = self._post("/uc/openapi/accountStatus", {}, key_field="apikey")
        if not isinstance(env.data, dict):
            raise VendorProtocolError(VENDOR, "bad_account_status", type(env.data).__name__)
        return dict(env.data)

    # --- one call, classified ---------------------------------------------------------------------

    def _post(
        self,
        path: str,
        body: dict[str, object],
        *,
        key_field: str = "apiKey",
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = frozenset({0}),
        creates: bool = False,
    ) -> Envelope:
        """POST with the key in the body too; return the envelope if its code is in `accept`, else raise."""
        env = self._send("POST", path, json={key_field: self._key, **body}, headers=headers, creates=creates)
        if env.code not in accept:
            bucket = BUCKETS.get(env.code, VendorRejected)
            raise bucket(VENDOR, f"runninghub_{env.code}", self._scrub(env.msg)[:300])
        return env

    def _cancel_quietly(self, task_id: str) -> None:
        with contextlib.suppress(VendorError):  # best effort: the submit is rejected either way
            self.cancel(task_id)


# --- wire shapes ----------------------------------------------------------------------------------


def _run_body(request: AppRun, webhook_url: str | None) -> dict[str, object]:
    body: dict[str, object] = {
        "webappId": request.webapp_id,
        "nodeInfoList": [
            {"nodeId": n.node_id, "fieldName": n.field_name, "fieldValue": n.field_value} for n in request.nodes
        ],
        "instanceType": request.instance_type,
    }
    if webhook_url:
        body["webhookUrl"] = webhook_url
    return body


def _task_id(data: object) -> str:
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or not str(task_id):
        raise VendorProtocolError(VENDOR, "missing_taskId", f"data={type(data).__name__}")
    return str(task_id)


def _node_errors(data: object) -> str:
    """`promptTips` is a JSON *string*; its non-empty `node_errors` (as JSON) mean a misconfigured node."""
    tips = data.get("promptTips") if isinstance(data, dict) else None
    try:
        parsed = json.loads(tips) if isinstance(tips, str) and tips else {}
    except ValueError:
        return ""  # informational only; the task was accepted
    errors = parsed.get("node_errors") if isinstance(parsed, dict) else None
    return json.dumps(errors) if errors else ""


def _files(data: object) -> tuple[VendorFile, ...]:
    if not isinstance(data, list) or not data:
        raise VendorProtocolError(VENDOR, "no_outputs", f"data={type(data).__name__}")
    return tuple(_file(item) for item in data)


def _file(item: object) -> VendorFile:
    url = item.get("fileUrl") if isinstance(item, dict) else None
    if not isinstance(url, str) or not url:
        raise VendorProtocolError(VENDOR, "missing_fileUrl")
    declared = item.get("fileType") if isinstance(item, dict) else None
    ext = _ext(declared, url)
    return VendorFile(url=url, content_type=CONTENT_TYPES.get(ext, "application/octet-stream"), ext=ext)


def _ext(declared: object, url: str) -> str:
    """The file's extension, no dot: `fileType` when it is one we know, else the URL path's."""
    named = declared.lower().lstrip(".") if isinstance(declared, str) else ""
    if named in CONTENT_TYPES:
        return named
    suffix = PurePosixPath(httpx.URL(url).path).suffix.lower().lstrip(".")
    return suffix or named or "bin"


def _failure(data: object) -> Failed:
    """805: an audit-style `failedReason` is a moderation reject; anything else a generic failure."""
    reason = data.get("failedReason") if isinstance(data, dict) else None
    if isinstance(reason, str):
        try:
            reason = json.loads(reason)
        except ValueError:
            return Failed("vendor_task_failed", reason[:300])
    if not isinstance(reason, dict):
        return Failed("vendor_task_failed")
    kind, text = str(reason.get("exception_type") or ""), str(reason.get("exception_message") or "")
    code = "vendor_moderation_rejected" if "audit" in kind.lower() else "vendor_task_failed"
    return Failed(code, f"{kind}: {text}"[:300])
