"""Tencent Hunyuan 3D (`ai3d`) simulator (VENDORS.md §2.7, §11) on the API 3.0 core.

`Hunyuan3DSim` owns a `TencentCloudSim` (exposed as `core`, where SMS or STS actions can be
registered later) and adds the Pro and Rapid action pairs. Submit validates fields as §2.2 does,
enforces the per-SecretId running-job limit (Pro 3, Rapid 1) with `RequestLimitExceeded.JobNumExceed`,
and fixes each job's fate when it is accepted; jobs then move WAIT -> RUN -> DONE|FAIL by the
injected clock. Like the real API it never dedupes: every accepted Submit is a new job, whatever
`X-TC-TraceId` says, and `created_tasks()` lists them all (orphans of lost answers included; the
core's `lost_answer_rate` knob, keyed by action, loses an answer after the action ran). A JobId
lives `job_expiry_s`; after that a Query answers `expired_code`.

Results are one simple model of the vendor's weight (`vendors.sim.meshes`: a GLB of a few MB, a
zip of .obj + .mtl, a rendered PNG preview; shape and colour follow the prompt or image, detail
follows `media_scale`), made when first downloaded and kept by input, plus small but valid
STL/USDZ/FBX/MP4 files on request, served under `/__sim/files/{JobId}/{name}` through
COS-shaped presigned links (`q-sign-algorithm=sha1&...`) that expire after `result_url_ttl_s`.
The admin surface is `/__sim/...` (vendors.sim.common). One lock (the core's) guards all state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
import secrets
import struct
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Final

import httpx
from PIL import Image

from vendors.sim import meshes
from vendors.sim.common import Call, check_non_negative, check_rate, file_response, roll
from vendors.sim.media import CACHE, check_scale, scaled
from vendors.sim.tasks import TaskBook, TaskQueries, TimedTask
from vendors.sim.tencent_cloud import ActionCall, TencentCloudError, TencentCloudSim, TencentProduct

SERVICE: Final = "ai3d"
VERSION: Final = "2025-05-13"
PRO_SUBMIT: Final = "SubmitHunyuanTo3DProJob"
PRO_QUERY: Final = "QueryHunyuanTo3DProJob"
RAPID_SUBMIT: Final = "SubmitHunyuanTo3DRapidJob"
RAPID_QUERY: Final = "QueryHunyuanTo3DRapidJob"

MB: Final = 1024 * 1024
VIEWS_30: Final = frozenset({"left", "right", "back"})
VIEWS_31: Final = VIEWS_30 | {"top", "bottom", "left_front", "right_front"}
GENERATE_CREDITS: Final[Mapping[str, float]] = {"Normal": 20, "LowPoly": 25, "Geometry": 15, "Sketch": 25}
PRO_FORMATS: Final = frozenset({"STL", "USDZ", "FBX"})
RAPID_FORMATS: Final = frozenset({"OBJ", "GLB", "STL", "USDZ", "FBX", "MP4"})
PRO_FIELDS: Final[Mapping[str, type]] = {
    "Model": str, "Prompt": str, "ImageBase64": str, "ImageUrl": str, "MultiViewImages": list,
    "EnablePBR": bool, "FaceCount": int, "GenerateType": str, "PolygonType": str, "ResultFormat": str,
}  # fmt: skip
RAPID_FIELDS: Final[Mapping[str, type]] = {
    "Prompt": str, "ImageBase64": str, "ImageUrl": str, "ResultFormat": str, "EnablePBR": bool,
    "EnableGeometry": bool,
}  # fmt: skip
VIEW_FIELDS: Final[Mapping[str, type]] = {"ViewType": str, "ViewImageUrl": str, "ViewImageBase64": str}
_MAIN_IMAGE: Final = ("JPEG", "PNG", "WEBP")
_VIEW_IMAGE: Final = ("JPEG", "PNG")
_FILE_NAME = re.compile(r"(\d+)/([a-z_]+\.[a-z0-9]+)")


@dataclass(frozen=True)
class Hunyuan3DKnobs:
    """ai3d behaviour switches; the API-layer ones (`latency_ms`, `failure_rate`, `failure_kind`,
    `clock_offset_s`, `seed`) live on the core's `TencentCloudKnobs`, and `configure` takes both."""

    pro_concurrency: int = 3  # unfinished Pro jobs per SecretId
    rapid_concurrency: int = 1
    queued_s: float = 5.0
    running_s: float = 60.0
    job_fail_rate: float = 0.0
    job_fail_code: str = "FailedOperation.InnerError"  # [?] the real FAIL ErrorCode values are unknown
    job_expiry_s: float = 24 * 3600.0
    expired_code: str = "ResourceNotFound"  # [?] what a Query of an expired JobId answers
    result_url_ttl_s: float = 24 * 3600.0
    media_scale: float = 1.0  # model detail and preview size: 1 = a vendor's (a GLB of a few MB)

    def __post_init__(self) -> None:
        for name in ("pro_concurrency", "rapid_concurrency", "queued_s", "running_s", "job_expiry_s"):
            check_non_negative(name, getattr(self, name))
        check_non_negative("result_url_ttl_s", self.result_url_ttl_s)
        check_rate("job_fail_rate", self.job_fail_rate)
        check_scale(self.media_scale)
        for name in ("job_fail_code", "expired_code"):
            if not isinstance(getattr(self, name), str) or not re.fullmatch(r"[A-Za-z][\w.]*", getattr(self, name)):
                raise ValueError(f"{name} must be a Tencent error code, got {getattr(self, name)!r}")


@dataclass
class _Job(TimedTask):
    """A job (`kind` pro | rapid); `fate` is success | fail, fixed at acceptance (or forced)."""

    formats: tuple[str, ...]  # File3D types, e.g. ("GLB", "OBJ")
    credits: tuple[tuple[str, float], ...]
    subject: str = ""  # what the model is of: the prompt, or the image (its URL or a hash)
    words: ClassVar[tuple[str, str, str, str, str]] = ("EXPIRED", "WAIT", "RUN", "DONE", "FAIL")

    def file_names(self) -> tuple[str, ...]:
        return (*(ARTIFACTS[kind][0] for kind in self.formats), PREVIEW_NAME)


class Hunyuan3DSim(TaskQueries[_Job], TencentProduct[Hunyuan3DKnobs]):
    """The simulator; see the module docstring and VENDORS.md §2.7."""

    def __init__(
        self, *, credentials: Mapping[str, str], clock: Callable[[], float] = time.time, seed: int | None = None
    ) -> None:
        super().__init__(TencentCloudSim(credentials=credentials, clock=clock, seed=seed), Hunyuan3DKnobs())
        self._tasks = TaskBook[_Job](self.core.lock, clock, lambda: self._knobs.job_expiry_s)
        self._cos_id = "AKID" + secrets.token_hex(16)  # signs the result links; never a caller's key
        self._cos_key = secrets.token_hex(16)
        actions: Mapping[str, Callable[[ActionCall], Mapping[str, object]]] = {
            PRO_SUBMIT: self._submit_pro,
            PRO_QUERY: lambda call: self._query(call, "pro"),
            RAPID_SUBMIT: self._submit_rapid,
            RAPID_QUERY: lambda call: self._query(call, "rapid"),
        }
        for action, handler in actions.items():
            self.core.register(action, handler, service=SERVICE, version=VERSION)

    # --- Python-side conveniences for tests (the rest come from TencentProduct and TaskQueries) ------

    def running(self, secret_id: str, kind: str | None = None) -> int:
        """This SecretId's jobs (of `kind`, or all) holding a slot right now (WAIT or RUN)."""
        return self._tasks.unfinished(secret_id, kind)

    def stats(self) -> dict[str, object]:
        return self._tasks.stats(self.core.secret_ids(), busy="running", total="jobs")

    def _forget(self) -> None:
        """Jobs go; credentials and knobs stay."""
        self._tasks.clear()

    # --- actions (called by the core under its lock) -------------------------------------------

    def _submit_pro(self, call: ActionCall) -> Mapping[str, object]:
        params = call.params
        _check_fields(params, PRO_FIELDS)
        model = params.get("Model", "3.0")
        generate = params.get("GenerateType", "Normal")
        if model not in ("3.0", "3.1"):
            raise _bad_value("Model", f"{model!r} is not one of 3.0, 3.1")
        if generate not in GENERATE_CREDITS:
            raise _bad_value("GenerateType", f"{generate!r} is not one of {', '.join(GENERATE_CREDITS)}")
        if model == "3.1" and generate == "LowPoly":
            raise _bad_value("GenerateType", "LowPoly is not available with Model 3.1")
        _check_options(params, generate)
        _check_inputs(params, prompt_max=1024, allow_both=generate == "Sketch")
        if "MultiViewImages" in params:
            _check_views(params["MultiViewImages"], VIEWS_31 if model == "3.1" else VIEWS_30)
        extra = params.get("ResultFormat")
        formats = ("GLB",) if generate == "Geometry" else ("GLB", "OBJ")
        return self._accept(call, "pro", (*formats, *([str(extra)] if extra else [])), _pro_credits(params))

    def _submit_rapid(self, call: ActionCall) -> Mapping[str, object]:
        params = call.params
        _check_fields(params, RAPID_FIELDS)
        geometry = bool(params.get("EnableGeometry"))
        fmt = params.get("ResultFormat") or ("GLB" if geometry else "OBJ")
        if fmt not in RAPID_FORMATS or (geometry and fmt == "OBJ"):
            raise _bad_value("ResultFormat", f"{fmt!r} is not available here")
        _check_inputs(params, prompt_max=200, allow_both=False)
        return self._accept(call, "rapid", (str(fmt),), (("Rapid", 15.0),))

    def _accept(
        self, call: ActionCall, kind: str, formats: tuple[str, ...], credits: tuple[tuple[str, float], ...]
    ) -> Mapping[str, object]:
        knobs, prompt = self._knobs, str(call.params.get("Prompt") or "")
        if "sim-reject" in prompt:
            raise TencentCloudError("OperationDenied.TextIllegalDetected", "文本包含违法违规信息，审核不通过。")  # noqa: RUF001
        limit = knobs.pro_concurrency if kind == "pro" else knobs.rapid_concurrency
        if self.running(call.secret_id, kind) >= limit:
            raise TencentCloudError("RequestLimitExceeded.JobNumExceed", f"当前已达到{limit}个任务上限，请稍后重试")  # noqa: RUF001
        fail = "sim-fail" in prompt or roll(self.core.rng, knobs.job_fail_rate)
        job = _Job(
            task_id=self._tasks.new_id(self.core.rng),
            account=call.secret_id,
            kind=kind,
            accepted_at=call.now,
            running_at=call.now + knobs.queued_s,
            done_at=call.now + knobs.queued_s + knobs.running_s,
            fate="fail" if fail else "success",
            formats=formats,
            credits=credits,
            subject=_subject(call.params),
        )
        self._tasks.add(job)
        return {"JobId": job.task_id}

    def _query(self, call: ActionCall, kind: str) -> Mapping[str, object]:
        job_id = call.params.get("JobId")
        if not isinstance(job_id, str) or not job_id:
            raise TencentCloudError("MissingParameter", "The parameter `JobId` is missing.")
        job = self._tasks.get(job_id)
        mine = job is not None and job.account == call.secret_id and job.kind == kind
        status = job.status(call.now, self._knobs.job_expiry_s) if job is not None and mine else "EXPIRED"
        if job is None or status == "EXPIRED":
            raise TencentCloudError(self._knobs.expired_code, f"The JobId `{job_id}` does not exist or has expired.")
        failed, done = status == "FAIL", status == "DONE"
        fields: dict[str, object] = {
            "Status": status,
            "ErrorCode": self._knobs.job_fail_code if failed else "",
            "ErrorMessage": "simulated generation failure" if failed else "",
            "ResultFile3Ds": [self._file3d(call, job, file_type) for file_type in job.formats] if done else [],
        }
        if kind == "pro":
            details = ", ".join(f"{k}：{v:g}" for k, v in job.credits)  # noqa: RUF001 (the vendor's colon)
            fields["ResultCreditDetails"] = details if done else ""
            fields["ResultCreditConsumed"] = float(sum(v for _, v in job.credits)) if done else 0.0
        return fields

    def _file3d(self, call: ActionCall, job: _Job, file_type: str) -> dict[str, str]:
        return {
            "Type": file_type,
            "Url": self._link(call, job, ARTIFACTS[file_type][0]),
            "PreviewImageUrl": self._link(call, job, PREVIEW_NAME),
        }

    def _link(self, call: ActionCall, job: _Job, name: str) -> str:
        start = int(call.now)
        end = int(call.now + self._knobs.result_url_ttl_s)
        path = f"/__sim/files/{job.task_id}/{name}"
        return cos_presigned_url(call.http.url, path, start=start, end=end, secret_id=self._cos_id, key=self._cos_key)

    # --- files ------------------------------------------------------------------------------------

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        """`{JobId}/{file}` of a DONE job; a presigned link must still be valid (a bare path is an
        admin peek). Errors are COS-style XML."""
        match = _FILE_NAME.fullmatch(name)
        job_id, file_name = match.groups() if match else ("", "")
        with self.core.lock:
            now = self.core.clock()
            self.core.record(Call("GET", request.url.path, now, "", job_id or None))
            job = self._tasks.get(job_id)
            ready = job is not None and file_name in job.file_names() and job.fate == "success"
        if job is None or not ready or now < job.done_at:
            return _cos_error(404, "NoSuchKey", "The specified key does not exist.")
        if "q-signature" in request.url.params and not cos_presign_ok(
            request.url, now=now, secret_id=self._cos_id, key=self._cos_key
        ):
            return _cos_error(403, "AccessDenied", "Request has expired or its signature does not match.")
        content_type = CONTENT_TYPES[file_name]
        return file_response(request, self._content(job, file_name), content_type)

    def _content(self, job: _Job, name: str) -> bytes:
        """The model's files come from its subject and detail, made once (`vendors.sim.media.CACHE`)."""
        if name not in MODEL_FILES:
            return STUBS[name](job.task_id)
        scale = self._knobs.media_scale
        return CACHE.get(("hunyuan3d", name, job.subject, scale), lambda: model_file(name, job.subject, scale))


# --- validation (VENDORS.md §2.2) -------------------------------------------------------------------


def _bad_value(field: str, why: str) -> TencentCloudError:
    return TencentCloudError("InvalidParameterValue", f"The value of parameter `{field}` is invalid: {why}.")


def _bad_param(field: str, why: str) -> TencentCloudError:
    return TencentCloudError("InvalidParameter", f"The parameter `{field}` is invalid: {why}.")


def _check_fields(params: Mapping[str, object], types: Mapping[str, type], prefix: str = "") -> None:
    """Unknown names are `UnknownParameter`; a JSON value of the wrong type is `InvalidParameter`."""
    for name, value in params.items():
        expected = types.get(name)
        if expected is None:
            raise TencentCloudError("UnknownParameter", f"The parameter `{prefix}{name}` is not recognized.")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise _bad_param(prefix + name, f"must be a {expected.__name__}")


def _check_options(params: Mapping[str, object], generate: object) -> None:
    polygon, faces, extra = params.get("PolygonType"), params.get("FaceCount"), params.get("ResultFormat")
    if polygon is not None and (generate != "LowPoly" or polygon not in ("triangle", "quadrilateral")):
        raise _bad_value("PolygonType", "triangle or quadrilateral, and only with GenerateType LowPoly")
    if isinstance(faces, int) and not 3000 <= faces <= 1_500_000:
        raise _bad_value("FaceCount", "must be within 3000..1500000")
    if extra is not None and extra not in PRO_FORMATS:
        raise _bad_value("ResultFormat", f"{extra!r} is not one of {', '.join(sorted(PRO_FORMATS))}")


def _check_inputs(params: Mapping[str, object], *, prompt_max: int, allow_both: bool) -> None:
    """Exactly one of Prompt / image (Sketch may send both); then each input's own limits."""
    prompt, url, b64 = (str(params.get(name) or "") for name in ("Prompt", "ImageUrl", "ImageBase64"))
    if len(prompt) > prompt_max:
        raise _bad_value("Prompt", f"longer than {prompt_max} characters")
    if url and b64:
        raise _bad_param("ImageBase64", "ImageUrl and ImageBase64 cannot both be given")
    if prompt and (url or b64) and not allow_both:
        raise _bad_param("Prompt", "Prompt and an image cannot both be given")
    if not (prompt or url or b64):
        raise _bad_param("Prompt", "one of Prompt, ImageUrl, ImageBase64 is required")
    if url:
        _check_url("ImageUrl", url)
    if b64:
        _check_image("ImageBase64", b64, formats=_MAIN_IMAGE, inclusive=True)


def _check_views(raw: object, allowed: frozenset[str]) -> None:
    """One image per view, of a view type this Model knows; sides strictly within 128..5000."""
    if not isinstance(raw, list) or not raw or not all(isinstance(view, dict) for view in raw):
        raise _bad_param("MultiViewImages", "must be a non-empty list of ViewImage")
    seen: set[str] = set()
    total = 0
    for index, view in enumerate(raw):
        field = f"MultiViewImages.{index}"
        _check_fields(view, VIEW_FIELDS, prefix=f"{field}.")
        view_type, url, b64 = view.get("ViewType"), view.get("ViewImageUrl"), view.get("ViewImageBase64")
        if view_type not in allowed or view_type in seen:
            raise _bad_value(f"{field}.ViewType", f"{view_type!r} is not an available view, or repeats one")
        seen.add(str(view_type))
        if bool(url) == bool(b64):
            raise _bad_param(field, "give exactly one of ViewImageUrl, ViewImageBase64")
        if url:
            _check_url(f"{field}.ViewImageUrl", str(url))
        else:
            total += _check_image(f"{field}.ViewImageBase64", str(b64), formats=_VIEW_IMAGE, inclusive=False)
    if total > 6 * MB:
        raise _bad_value("MultiViewImages", "the images exceed 6 MB together")


def _check_url(field: str, url: str) -> None:
    try:
        host = httpx.URL(url).host if url.startswith(("http://", "https://")) else ""
    except httpx.InvalidURL:
        host = ""
    if not host:
        raise _bad_value(field, "must be an http(s) URL")


def _check_image(field: str, b64: str, *, formats: tuple[str, ...], inclusive: bool) -> int:
    """The decoded size of a valid base64 image of an allowed format and side length."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_value(field, "is not valid base64") from None
    if len(raw) > 6 * MB:
        raise _bad_value(field, "the image exceeds 6 MB")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            kind, sides = image.format, image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise _bad_value(field, "is not an image") from None
    if kind not in formats:
        raise _bad_value(field, f"format {kind} is not one of {', '.join(formats)}")
    if not all((128 <= s <= 5000) if inclusive else (128 < s < 5000) for s in sides):
        raise _bad_value(field, f"sides {sides[0]}x{sides[1]} are outside 128..5000 px")
    return len(raw)


def _subject(params: Mapping[str, object]) -> str:
    """What the model is of, to shape and colour it: the prompt, else the image."""
    if params.get("Prompt"):
        return str(params["Prompt"])
    if params.get("ImageUrl"):
        return f"image {params['ImageUrl']}"
    return "image " + hashlib.sha256(str(params.get("ImageBase64", "")).encode()).hexdigest()[:16]


def _pro_credits(params: Mapping[str, object]) -> tuple[tuple[str, float], ...]:
    """Plausible `ResultCreditDetails` items (VENDORS.md §2.5: estimates, not authoritative)."""
    generate = str(params.get("GenerateType", "Normal"))
    extras = {"MultiViewImages": 10.0, "EnablePBR": 10.0, "FaceCount": 10.0, "ResultFormat": 5.0}
    items = [(f"Generate-{generate}", GENERATE_CREDITS[generate])]
    return (*items, *((name, cost) for name, cost in extras.items() if params.get(name)))


# --- COS-shaped presigned links (VENDORS.md §7.2) --------------------------------------------------


def cos_presigned_url(origin: httpx.URL, path: str, *, start: int, end: int, secret_id: str, key: str) -> str:
    """`{scheme}://{host}{path}?q-sign-algorithm=sha1&q-ak=..&q-sign-time=start;end&...&q-signature=..`,
    the query-string form of a COS native signature over `get` + path (no headers, no params)."""
    key_time = f"{start};{end}"
    params = {
        "q-sign-algorithm": "sha1",
        "q-ak": secret_id,
        "q-sign-time": key_time,
        "q-key-time": key_time,
        "q-header-list": "",
        "q-url-param-list": "",
        "q-signature": _cos_signature(path, key_time, key),
    }
    return str(origin.copy_with(path=path, query=None, fragment=None).copy_merge_params(params))


def cos_presign_ok(url: httpx.URL, *, now: float, secret_id: str, key: str) -> bool:
    """True when the link is ours, unexpired, and its signature matches its path and key time."""
    key_time = url.params.get("q-sign-time", "")
    start, _, end = key_time.partition(";")
    if url.params.get("q-ak") != secret_id or not (start.isdigit() and end.isdigit()) or int(end) < now:
        return False
    return hmac.compare_digest(url.params.get("q-signature", ""), _cos_signature(url.path, key_time, key))


def _cos_signature(path: str, key_time: str, key: str) -> str:
    sign_key = hmac.new(key.encode(), key_time.encode(), hashlib.sha1).hexdigest()
    http_string = f"get\n{path}\n\n\n"
    to_sign = f"sha1\n{key_time}\n{hashlib.sha1(http_string.encode(), usedforsecurity=False).hexdigest()}\n"
    return hmac.new(sign_key.encode(), to_sign.encode(), hashlib.sha1).hexdigest()


def _cos_error(status: int, code: str, message: str) -> httpx.Response:
    body = f"<?xml version='1.0' encoding='utf-8' ?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return httpx.Response(status, headers={"Content-Type": "application/xml"}, text=body)


# --- the model's files -------------------------------------------------------------------------


def model_file(name: str, subject: str, scale: float) -> bytes:
    """`model.glb`, `model_obj.zip` or `preview.png` of `subject` at `scale` of a vendor's detail."""
    if name == PREVIEW_NAME:
        coarse = meshes.vase(subject, min(48, scaled(meshes.DETAIL, scale, minimum=8)))
        return meshes.preview(coarse, scaled(meshes.PREVIEW_SIDE, scale, minimum=64), subject)
    mesh = meshes.vase(subject, scaled(meshes.DETAIL, scale, minimum=8))
    return meshes.glb(mesh, subject[:64]) if name == "model.glb" else meshes.obj_zip(mesh, subject[:64])


# --- small but valid artifacts (VENDORS.md §11.1) --------------------------------------------------

_ZIP_TIME: Final = (2025, 5, 13, 0, 0, 0)
_TRIANGLE: Final = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@lru_cache(maxsize=256)
def stl_bytes(label: str) -> bytes:
    """Binary STL: an 80-byte header, a facet count and one facet."""
    header = f"genq hunyuan3d simulator {label}".encode()[:80].ljust(80, b" ")
    return header + struct.pack("<I12fH", 1, 0.0, 0.0, 1.0, *_TRIANGLE, 0)


@lru_cache(maxsize=256)
def usdz_bytes(label: str) -> bytes:
    """A USDZ package: an uncompressed zip whose one `.usda` layer starts on a 64-byte boundary."""
    usda = (
        f'#usda 1.0\n(\n    defaultPrim = "Model"\n    doc = "genq hunyuan3d simulator {label}"\n)\n\n'
        'def Mesh "Model"\n{\n    int[] faceVertexCounts = [3]\n    int[] faceVertexIndices = [0, 1, 2]\n'
        "    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]\n}\n"
    )
    name = "model.usda"
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    pad = -(30 + len(name) + 4) % 64  # local header + name + padding field header
    info.extra = struct.pack("<HH", 0x1986, pad) + bytes(pad)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(info, usda)
    return buffer.getvalue()


@lru_cache(maxsize=256)
def fbx_bytes(label: str) -> bytes:
    """An ASCII FBX 7.4 document with one triangle mesh."""
    return (
        f"; FBX 7.4.0 project file\n; genq hunyuan3d simulator {label}\n"
        "FBXHeaderExtension:  {\n    FBXHeaderVersion: 1003\n    FBXVersion: 7400\n}\n"
        'Objects:  {\n    Geometry: 1, "Geometry::Model", "Mesh" {\n'
        "        Vertices: *9 {\n            a: 0,0,0,1,0,0,0,1,0\n        }\n"
        "        PolygonVertexIndex: *3 {\n            a: 0,1,-3\n        }\n    }\n}\n"
    ).encode()


@lru_cache(maxsize=256)
def mp4_bytes(label: str) -> bytes:
    """An ISO-BMFF file with `ftyp` and a `moov` holding only a movie header (no tracks)."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = struct.pack(">B3xIIII", 0, 0, 0, 1000, 0) + struct.pack(">IH10x", 0x10000, 0x100) + matrix
    mvhd += bytes(24) + struct.pack(">I", 1)
    note = box(b"free", f"genq hunyuan3d simulator {label}".encode())
    return box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41") + box(b"moov", box(b"mvhd", mvhd)) + note


PREVIEW_NAME: Final = "preview.png"
ARTIFACTS: Final[Mapping[str, tuple[str, str]]] = {
    "GLB": ("model.glb", "model/gltf-binary"),
    "OBJ": ("model_obj.zip", "application/zip"),
    "STL": ("model.stl", "model/stl"),
    "USDZ": ("model.usdz", "model/vnd.usdz+zip"),
    "FBX": ("model.fbx", "application/octet-stream"),
    "MP4": ("model.mp4", "video/mp4"),
}
"""`File3D.Type` -> (file name, content type)."""
CONTENT_TYPES: Final[Mapping[str, str]] = {**dict(ARTIFACTS.values()), PREVIEW_NAME: "image/png"}
MODEL_FILES: Final = frozenset({"model.glb", "model_obj.zip", PREVIEW_NAME})
STUBS: Final[Mapping[str, Callable[[str], bytes]]] = {
    "model.stl": stl_bytes,
    "model.usdz": usdz_bytes,
    "model.fbx": fbx_bytes,
    "model.mp4": mp4_bytes,
}
"""The other formats, small but valid, from the JobId."""
