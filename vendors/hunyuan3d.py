"""Tencent Hunyuan 3D (`ai3d`, VENDORS.md §2): the only module that knows its actions and fields.

Pro actions only: `SubmitHunyuanTo3DProJob` carries `Model` 3.0/3.1 and `GenerateType` LowPoly.
Signing, the envelope and error buckets are `vendors.tencent_cloud`'s; the same code runs against
the real endpoint and the simulator, only the caller's `httpx.Client` base_url differs.

ai3d has no idempotency key and does not dedupe submissions: our job id travels as `X-TC-TraceId`
for correlation only, so a submit whose answer was lost raises `VendorOutcomeUnknown`. It has no
cancel action either (`can_cancel` is False): a job runs (and holds one of the account's
concurrent slots) until it ends. JobIds live 24 h; after that a Query answers an error
(`ResourceNotFound` in the simulator; the real code is unconfirmed, so it is configurable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

import httpx

from vendors.base import (
    Done,
    Failed,
    PolledOutputs,
    PollOutcome,
    Running,
    VendorFile,
    VendorProtocolError,
    VendorRejected,
    request_as,
)
from vendors.tencent_cloud import TencentClient, require_str

VENDOR: Final = "hunyuan3d"
SERVICE: Final = "ai3d"
API_VERSION: Final = "2025-05-13"
SUBMIT: Final = "SubmitHunyuanTo3DProJob"
QUERY: Final = "QueryHunyuanTo3DProJob"
RAPID_SUBMIT: Final = "SubmitHunyuanTo3DRapidJob"
RAPID_QUERY: Final = "QueryHunyuanTo3DRapidJob"
RAPID_PREFIX: Final = "rapid:"
"""A Rapid job's task id is `rapid:<JobId>`: polling must ask the action pair that made it."""
RAPID_PROMPT_MAX: Final = 200
EXPIRED_CODES: Final = ("ResourceNotFound*",)
"""Query error-code patterns that mean the JobId is gone (VENDORS.md §2.6)."""

STAGES: Final[Mapping[str, str]] = {"WAIT": "queued", "RUN": "running"}

CONTENT_TYPES: Final[Mapping[str, str]] = {
    "glb": "model/gltf-binary",
    "zip": "application/zip",
    "obj": "model/obj",
    "mtl": "model/mtl",
    "stl": "model/stl",
    "usdz": "model/vnd.usdz+zip",
    "fbx": "application/octet-stream",
    "mp4": "video/mp4",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}
TYPE_EXT: Final[Mapping[str, str]] = {
    "GLB": "glb", "OBJ": "zip", "STL": "stl", "USDZ": "usdz", "FBX": "fbx", "MP4": "mp4", "IMAGE": "png",
    "MTL": "mtl",
}  # fmt: skip
"""`File3D.Type` -> extension when the URL's own suffix says nothing we know (OBJ comes zipped)."""

_IMAGE_EXTS: Final = frozenset({"png", "jpg", "jpeg", "webp", "gif"})


@dataclass(frozen=True)
class ViewImage:
    """One extra view: `left`, `right`, `back`; with 3.1 also `top`, `bottom`, `left_front`, `right_front`."""

    view_type: str
    url: str | None = None
    base64: str | None = None


@dataclass(frozen=True)
class Hunyuan3DRequest:
    """Text- or image-to-3D: exactly one of `prompt`, `image_url`, `image_base64`."""

    version: str  # "3.0" | "3.1" -> Model
    prompt: str | None = None
    image_url: str | None = None
    image_base64: str | None = None
    low_poly: bool = False  # 3.0 only -> GenerateType "LowPoly"
    views: tuple[ViewImage, ...] = ()  # -> MultiViewImages
    result_format: str | None = None  # one extra format: STL, USDZ, FBX
    rapid: bool = False  # the cheaper Rapid pair: no version, LowPoly or views; prompt <= 200


class Hunyuan3DClient(TencentClient, PolledOutputs):
    """The ai3d Pro surface the generation, polling and archiving workers use."""

    name = VENDOR
    service = SERVICE
    version = API_VERSION
    can_cancel = False  # ai3d has no cancel action (VENDORS.md §2)

    def __init__(
        self,
        http: httpx.Client,
        *,
        expired_codes: Collection[str] = EXPIRED_CODES,
        secret_id: str,
        secret_key: str,
        region: str = "ap-guangzhou",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`expired_codes`: the Query error-code patterns that mean the JobId is gone."""
        super().__init__(http, secret_id=secret_id, secret_key=secret_key, region=region, clock=clock)
        self._expired = tuple(expired_codes)

    def submit(self, request: object, *, idempotency_key: str) -> str:
        """Start a Pro (or Rapid) job; return its numeric-string JobId. Not deduped by the vendor."""
        request = request_as(request, Hunyuan3DRequest, self)
        if request.rapid:
            fields = self._api.call(RAPID_SUBMIT, _rapid_body(request), trace_id=idempotency_key, creates=True)
            return RAPID_PREFIX + require_str(VENDOR, fields, "JobId")
        fields = self._api.call(SUBMIT, _submit_body(request), trace_id=idempotency_key, creates=True)
        return require_str(VENDOR, fields, "JobId")

    def poll(self, task_id: str) -> PollOutcome:
        """WAIT/RUN -> `Running(stage)`; DONE -> `Done(files)`; FAIL -> `Failed`; gone -> `VendorExpired`."""
        action, job_id = (RAPID_QUERY, task_id.removeprefix(RAPID_PREFIX)) if task_id.startswith(RAPID_PREFIX) else (
            QUERY, task_id)  # fmt: skip
        fields = self._api.call(action, {"JobId": job_id}, expired=self._expired)
        status = fields.get("Status")
        if isinstance(status, str) and status in STAGES:
            return Running(stage=STAGES[status])
        if status == "DONE":
            return Done(files=_files(fields.get("ResultFile3Ds")))
        if status == "FAIL":
            return _failure(fields)
        raise VendorProtocolError(VENDOR, "unknown_status", repr(status)[:60])

    def cancel(self, task_id: str) -> None:
        """ai3d has no cancel action: a no-op (not an exception: callers that stop a job on our side
        call it as best effort). The job runs on and holds its slot until it ends; `can_cancel` is False."""


# --- wire shapes ----------------------------------------------------------------------------------


def _one_input(request: Hunyuan3DRequest) -> dict[str, object]:
    inputs = {"Prompt": request.prompt, "ImageUrl": request.image_url, "ImageBase64": request.image_base64}
    given: dict[str, object] = {name: value for name, value in inputs.items() if value}
    if len(given) != 1:
        raise VendorRejected(VENDOR, "invalid_request", "give exactly one of prompt, image_url, image_base64")
    return given


def _rapid_body(request: Hunyuan3DRequest) -> dict[str, object]:
    """The Rapid submit fields (VENDORS §2.4): one input, a shorter prompt, one result format."""
    given = _one_input(request)
    if request.low_poly or request.views:
        raise VendorRejected(VENDOR, "invalid_request", "Rapid jobs take no low_poly and no extra views")
    if request.prompt is not None and len(request.prompt) > RAPID_PROMPT_MAX:
        raise VendorRejected(VENDOR, "invalid_request", f"Rapid prompts are at most {RAPID_PROMPT_MAX} characters")
    return given | ({"ResultFormat": request.result_format} if request.result_format else {})


def _submit_body(request: Hunyuan3DRequest) -> dict[str, object]:
    """The Pro submit fields; the two rules checked here are the ones we must never send broken."""
    given = _one_input(request)
    if request.low_poly and request.version != "3.0":
        raise VendorRejected(VENDOR, "invalid_request", f"low_poly is not available with version {request.version}")
    body: dict[str, object] = {"Model": request.version, **given}
    if request.low_poly:
        body["GenerateType"] = "LowPoly"
    if request.views:
        body["MultiViewImages"] = [_view(view) for view in request.views]
    if request.result_format:
        body["ResultFormat"] = request.result_format
    return body


def _view(view: ViewImage) -> dict[str, str]:
    fields = {"ViewType": view.view_type, "ViewImageUrl": view.url, "ViewImageBase64": view.base64}
    return {name: value for name, value in fields.items() if value is not None}


def _files(entries: object) -> tuple[VendorFile, ...]:
    """Each `File3D.Url`, then each distinct `PreviewImageUrl` as an image."""
    if not isinstance(entries, list) or not entries:
        raise VendorProtocolError(VENDOR, "no_outputs", f"ResultFile3Ds={type(entries).__name__}")
    files = [_file(entry) for entry in entries]
    previews = dict.fromkeys(url for entry in entries if isinstance(url := entry.get("PreviewImageUrl"), str) and url)
    return (*files, *(_preview(url) for url in previews))


def _file(entry: object) -> VendorFile:
    url = entry.get("Url") if isinstance(entry, dict) else None
    if not isinstance(url, str) or not url:
        raise VendorProtocolError(VENDOR, "missing_Url")
    declared = entry.get("Type") if isinstance(entry, dict) else None
    suffix = _suffix(url)
    ext = suffix if suffix in CONTENT_TYPES else TYPE_EXT.get(str(declared).upper(), suffix or "bin")
    return VendorFile(url=url, content_type=CONTENT_TYPES.get(ext, "application/octet-stream"), ext=ext)


def _preview(url: str) -> VendorFile:
    suffix = _suffix(url)
    ext = suffix if suffix in _IMAGE_EXTS else "bin"
    return VendorFile(url=url, content_type=CONTENT_TYPES.get(ext, "application/octet-stream"), ext=ext)


def _suffix(url: str) -> str:
    return PurePosixPath(httpx.URL(url).path).suffix.lower().lstrip(".")


def _failure(fields: Mapping[str, object]) -> Failed:
    code, message = fields.get("ErrorCode"), fields.get("ErrorMessage")
    text = message[:300] if isinstance(message, str) else ""
    return Failed(f"tencent_{code}" if isinstance(code, str) and code else "vendor_task_failed", text)
