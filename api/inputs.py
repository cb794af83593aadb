"""Request bodies and per-kind input shapes (msgspec structs, checked before anything is charged)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from api.errors import msgspec_path
from domain.errors import InvalidInput
from domain.jobs import JobKind
from domain.pose12 import Category, Scene

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class JobIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: JobKind
    input: dict[str, Any]


class Pose12Input(msgspec.Struct, forbid_unknown_fields=True):
    image_url: Url
    scene: Scene
    category: Category


INPUTS: Mapping[JobKind, type[msgspec.Struct]] = {JobKind.MODEL_POSE12: Pose12Input}


def validated_input(kind: JobKind, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The kind's input, checked field by field; InvalidInput names the field as `input.<name>`."""
    try:
        value = msgspec.convert(raw, INPUTS[kind])
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        raise InvalidInput(_field("input", message, path.rstrip("`")), message) from None
    checked: dict[str, Any] = msgspec.to_builtins(value)
    for name, url in checked.items():
        if name.endswith("_url") and not str(url).lower().startswith(("http://", "https://")):
            raise InvalidInput(f"input.{name}", "must be an http(s) URL")
    return checked


def request_hash(kind: JobKind, checked_input: Mapping[str, Any]) -> str:
    """Canonical digest of a submission, to tell an idempotent replay from a reused key."""
    canonical = msgspec.json.encode({"kind": kind.value, "input": dict(sorted(checked_input.items()))})
    return hashlib.sha256(canonical).hexdigest()


def _field(root: str, message: str, path: str) -> str:
    """The dotted field a msgspec error is about, including a missing or unknown field's name."""
    parts = [root, msgspec_path(path)] if path else [root]
    named = re.search(r"(?:missing required|unknown) field `([^`]+)`", message)
    if named:
        parts.append(named.group(1))
    return ".".join(p for p in parts if p)
