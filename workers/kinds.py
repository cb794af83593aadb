"""Per kind: the vendor request a job becomes, and what archiving does to each fetched output.

Server-side details (the pose12 prompt builder, the seed) stay here, never in the API's answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from domain import pose12
from domain.jobs import Job, JobKind
from infra.settings import Settings
from vendors.hunyuan3d import Hunyuan3DRequest, ViewImage
from vendors.kie import VideoRequest
from vendors.moderation import ItemKind
from vendors.runninghub import AppRun, NodeValue
from vendors.tencent_ci import MattingRequest, flatten_on_white

Transform = Callable[[bytes], bytes]


def request(job: Job, settings: Settings, rng: random.Random) -> object:
    match job.kind:
        case JobKind.BASIC_CLEAN:
            return MattingRequest(image_url=job.input["image_url"])
        case JobKind.MODEL_POSE12:
            return _pose12(job, settings, rng)
        case JobKind.VIDEO:
            return _video(job.input)
        case JobKind.MODEL_3D:
            return _model_3d(job.input)
    raise NotImplementedError(job.kind)


def transform(job: Job) -> Transform | None:
    """basic_clean's cut-out arrives transparent; the product goes on white here (VENDORS §6.2)."""
    return flatten_on_white if job.kind is JobKind.BASIC_CLEAN else None


def _pose12(job: Job, settings: Settings, rng: random.Random) -> AppRun:
    prompt = pose12.build_prompt(pose12.Scene(job.input["scene"]), pose12.Category(job.input["category"]))
    values = {
        settings.runninghub_node_prompt: prompt,
        settings.runninghub_node_image: str(job.input["image_url"]),
        settings.runninghub_node_seed: str(rng.randint(0, pose12.SEED_MAX)),
    }
    return AppRun(
        webapp_id=settings.runninghub_webapp_id,
        nodes=tuple(NodeValue(*_node(spec), value) for spec, value in values.items()),
    )


def _video(data: Mapping[str, Any]) -> VideoRequest:
    return VideoRequest(
        model=data["model"],
        resolution=data["resolution"],
        duration=int(data["duration"]),
        prompt=data["prompt"],
        image_url=data.get("image_url"),
    )


def _model_3d(data: Mapping[str, Any]) -> Hunyuan3DRequest:
    views = tuple(
        ViewImage(view_type=v["view_type"], url=v.get("image_url"), base64=v.get("image_base64"))
        for v in data.get("views") or ()
    )
    return Hunyuan3DRequest(
        version=data["version"],
        prompt=data.get("prompt"),
        image_url=data.get("image_url"),
        image_base64=data.get("image_base64"),
        low_poly=bool(data.get("low_poly")),
        views=views,
    )


def _node(spec: str) -> tuple[str, str]:
    """`"6:text"` -> node id "6", field "text" (settings name the app's nodes this way)."""
    node_id, _, field_name = spec.partition(":")
    return node_id, field_name


@dataclass(frozen=True)
class ModerationInput:
    """One thing a user gave us that moderation must see: text, an image URL, or a base64 image."""

    kind: ItemKind
    text: str | None = None
    url: str | None = None
    base64: str | None = None
    upload_key: str | None = None


def moderation_inputs(job: Job) -> list[ModerationInput]:
    """The job's user-given inputs, in a stable order (their index is the audit's item number).

    The pose12 prompt is ours, built server-side from fixed words: only the user's image is checked.
    """
    data = job.input
    found: list[ModerationInput] = []
    if isinstance(data.get("prompt"), str) and data["prompt"].strip():
        found.append(ModerationInput(ItemKind.TEXT, text=data["prompt"]))
    for holder in [data, *(data.get("views") or ())]:
        if holder.get("image_url"):
            found.append(ModerationInput(ItemKind.IMAGE, url=holder["image_url"]))
        elif holder.get("image_base64"):
            found.append(ModerationInput(ItemKind.IMAGE, base64=holder["image_base64"]))
        elif holder.get("upload_key"):
            found.append(ModerationInput(ItemKind.IMAGE, upload_key=holder["upload_key"]))
    return found
