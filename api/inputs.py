"""Request bodies and per-kind input shapes, checked before anything is charged.

msgspec checks the shape; domain/ checks the rules (prompt length, version options, which fields
go together); the image inspector fetches or decodes every image and checks size and pixels.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from api.errors import msgspec_path
from domain import model3d, video
from domain.errors import InvalidInput
from domain.inputs import ImageFacts, check_prompt
from domain.jobs import JobKind
from domain.pose12 import Category, Scene
from infra.images import ImageInspector
from infra.storage import Storage

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class JobIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: JobKind
    input: dict[str, Any]
    # "batch" waits behind interactive jobs: fast class (720p, 1080p-10 s, every other kind) or
    # slow class (1080p-15 s), seed 001's queues
    priority: Literal["interactive", "batch"] = "interactive"
    # the client's own reference, unique among its jobs; GET /v1/jobs?external_id= finds the job
    external_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    # where the job's events are POSTed, signed (Standard Webhooks); default: the API key's, if any
    webhook_url: Url | None = None
    # "completed": the terminal event only (the default); "all": every state the job enters
    webhook_events: Literal["completed", "all"] | None = None


Key = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class BasicCleanInput(msgspec.Struct, forbid_unknown_fields=True):
    image_url: Url | None = None
    upload_key: Key | None = None  # from POST /v1/uploads, instead of an image_url


class Pose12Input(msgspec.Struct, forbid_unknown_fields=True):
    scene: Scene
    category: Category
    image_url: Url | None = None
    upload_key: Key | None = None


class VideoInput(msgspec.Struct, forbid_unknown_fields=True):
    model: video.VideoModel
    resolution: video.Resolution
    duration: int
    prompt: str
    image_url: Url | None = None
    upload_key: Key | None = None


class View(msgspec.Struct, forbid_unknown_fields=True):
    view_type: str
    image_url: Url | None = None
    image_base64: str | None = None


class Model3DInput(msgspec.Struct, forbid_unknown_fields=True):
    version: model3d.Version
    prompt: str | None = None
    image_url: Url | None = None
    image_base64: str | None = None
    upload_key: Key | None = None
    low_poly: bool = False
    views: list[View] = msgspec.field(default_factory=list)


def _basic_clean(value: BasicCleanInput, images: Images) -> None:
    _one_image(images, value.image_url, value.upload_key, required=True)


def _pose12(value: Pose12Input, images: Images) -> None:
    _one_image(images, value.image_url, value.upload_key, required=True)


def _video(value: VideoInput, images: Images) -> None:
    video.check_variant(value.model, value.resolution, value.duration)
    check_prompt("input.prompt", value.prompt, required=True)
    _one_image(images, value.image_url, value.upload_key, required=False)


def _model_3d(value: Model3DInput, images: Images) -> None:
    if value.prompt is not None:
        check_prompt("input.prompt", value.prompt, required=True)
    given = [n for n, v in (("image_url", value.image_url), ("image_base64", value.image_base64),
                            ("upload_key", value.upload_key)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise InvalidInput(f"input.{given[-1]}", f"give one image: {' or '.join(given)}, not both")
    model3d.check_request(
        value.version,
        has_prompt=value.prompt is not None,
        has_image=bool(given),
        low_poly=value.low_poly,
        views=[view.view_type for view in value.views],
    )
    _check_image(images, "input", value.image_url, value.image_base64)
    if value.upload_key is not None:
        images.uploaded("input.upload_key", value.upload_key)
    for index, view in enumerate(value.views):
        if (view.image_url is None) == (view.image_base64 is None):
            raise InvalidInput(f"input.views.{index}", "give a view image_url or image_base64, exactly one")
        _check_image(images, f"input.views.{index}", view.image_url, view.image_base64)


def _one_image(images: Images, url: str | None, key: str | None, *, required: bool) -> None:
    if url is not None and key is not None:
        raise InvalidInput("input.upload_key", "give image_url or upload_key, not both")
    if url is not None:
        images.from_url("input.image_url", url)
    elif key is not None:
        images.uploaded("input.upload_key", key)
    elif required:
        raise InvalidInput("input.image_url", "an image is required: image_url or upload_key")


def _check_image(images: Images, prefix: str, url: str | None, data: str | None) -> None:
    if url is not None:
        images.from_url(f"{prefix}.image_url", url)
    elif data is not None:
        images.inspector.from_base64(f"{prefix}.image_base64", data)


@dataclass(frozen=True)
class Images:
    """Checks a job's images: fetched URLs, decoded base64, and the caller's own uploads."""

    inspector: ImageInspector
    storage: Storage
    user_id: str
    fetched: Mapping[str, ImageFacts] = field(default_factory=dict)  # URLs checked already (`prefetch`)

    def from_url(self, field_name: str, url: str) -> None:
        if url not in self.fetched:
            self.inspector.from_url(field_name, url)

    def uploaded(self, field: str, key: str) -> None:
        """An upload key must be under the caller's own prefix and name an uploaded image."""
        if not key.startswith(f"uploads/{self.user_id}/") or ".." in key:
            raise InvalidInput(field, "not one of your uploads")
        if not self.storage.exists(key):
            raise InvalidInput(field, "nothing was uploaded under this key (yet)")
        self.inspector.from_bytes(field, self.storage.read(key))


async def prefetch(inspector: ImageInspector, kind: JobKind, raw: Mapping[str, Any]) -> dict[str, ImageFacts]:
    """Fetch and check a job input's image URLs on the event loop (no thread held while the image
    downloads), once its shape is right, before its rules are checked in a worker thread."""
    _shaped(kind, raw)  # a missing or mistyped field is named before any image is fetched
    fetched: dict[str, ImageFacts] = {}
    for field_name, url in _image_urls(raw):
        if url not in fetched:
            fetched[url] = await inspector.afrom_url(field_name, url)
    return fetched


def _image_urls(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = [("input.image_url", raw["image_url"])] if isinstance(raw.get("image_url"), str) else []
    views = raw.get("views")
    for index, view in enumerate(views if isinstance(views, list) else []):
        if isinstance(view, Mapping) and isinstance(view.get("image_url"), str):
            found.append((f"input.views.{index}.image_url", view["image_url"]))
    return found


CHECKS: Mapping[JobKind, tuple[type[msgspec.Struct], Callable[[Any, Images], None]]] = {
    JobKind.BASIC_CLEAN: (BasicCleanInput, _basic_clean),
    JobKind.MODEL_POSE12: (Pose12Input, _pose12),
    JobKind.VIDEO: (VideoInput, _video),
    JobKind.MODEL_3D: (Model3DInput, _model_3d),
}


def validated_input(kind: JobKind, raw: Mapping[str, Any], images: Images) -> dict[str, Any]:
    """The kind's input, checked field by field; InvalidInput names the field as `input.<name>`."""
    value = _shaped(kind, raw)
    CHECKS[kind][1](value, images)
    checked: dict[str, Any] = msgspec.to_builtins(value)
    return checked


def _shaped(kind: JobKind, raw: Mapping[str, Any]) -> Any:
    try:
        return msgspec.convert(raw, CHECKS[kind][0])
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        raise InvalidInput(_field("input", message, path.rstrip("`")), message) from None


def request_hash(
    kind: JobKind,
    checked_input: Mapping[str, Any],
    priority: str = "interactive",
    external_id: str | None = None,
    webhook: tuple[str | None, str | None] = (None, None),
) -> str:
    """Canonical digest of a submission, to tell an idempotent replay from a reused key."""
    body: dict[str, Any] = {"kind": kind.value, "input": checked_input}
    if priority != "interactive":  # absent from digests made before priorities existed
        body["priority"] = priority
    if external_id is not None:
        body["external_id"] = external_id
    if webhook != (None, None):
        body["webhook"] = list(webhook)
    canonical = msgspec.json.encode(body, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def _field(root: str, message: str, path: str) -> str:
    """The dotted field a msgspec error is about, including a missing or unknown field's name."""
    parts = [root, msgspec_path(path)] if path else [root]
    named = re.search(r"(?:missing required|unknown) field `([^`]+)`", message)
    if named:
        parts.append(named.group(1))
    return ".".join(p for p in parts if p)
