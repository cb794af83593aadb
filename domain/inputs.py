"""Input rules of SPEC §2, checked before anything is charged. Pure: sizes and pixels are passed in.

Each failure names the field (dotted path from the request body) it is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from domain.errors import InvalidInput

MB: Final = 1024 * 1024


class ImageSource(StrEnum):
    URL = "url"
    BASE64 = "base64"


@dataclass(frozen=True)
class ImageLimits:
    url_max_bytes: int = 8 * MB
    base64_max_bytes: int = 6 * MB  # of the decoded image
    min_side: int = 128
    max_side: int = 5000


@dataclass(frozen=True)
class ImageFacts:
    size: int
    width: int
    height: int
    format: str  # "PNG", "JPEG", "WEBP", ...


ACCEPTED_FORMATS: Final = frozenset({"PNG", "JPEG", "WEBP"})
PROMPT_MAX: Final = 1024


def check_prompt(field: str, prompt: str, *, required: bool = False) -> None:
    if required and not prompt.strip():
        raise InvalidInput(field, "a prompt is required")
    if len(prompt) > PROMPT_MAX:
        raise InvalidInput(field, f"at most {PROMPT_MAX} characters (got {len(prompt)})")


def check_image(field: str, facts: ImageFacts, source: ImageSource, limits: ImageLimits | None = None) -> None:
    limits = limits or ImageLimits()
    cap = limits.url_max_bytes if source is ImageSource.URL else limits.base64_max_bytes
    if facts.size > cap:
        raise InvalidInput(field, f"the image is {facts.size} bytes; at most {cap} by {source}")
    if facts.format not in ACCEPTED_FORMATS:
        raise InvalidInput(field, f"{facts.format or 'unknown'} images are not accepted (PNG, JPEG, WEBP)")
    for side in (facts.width, facts.height):
        if not limits.min_side <= side <= limits.max_side:
            raise InvalidInput(
                field, f"image sides must be {limits.min_side}-{limits.max_side} px (got {facts.width}x{facts.height})"
            )


def exactly_one(fields: Sequence[tuple[str, bool]], *, what: str) -> str:
    """The one field that is set among `fields` (name, is_set); InvalidInput if none or several."""
    chosen = [name for name, present in fields if present]
    if len(chosen) != 1:
        names = " or ".join(name for name, _ in fields) if not chosen else " and ".join(chosen)
        raise InvalidInput(chosen[-1] if chosen else "input", f"{what}: give exactly one of {names}")
    return chosen[0]
