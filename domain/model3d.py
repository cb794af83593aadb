"""3D jobs (Tencent Hunyuan 3D Pro): what each version accepts (VENDORS §2.2, SPEC §2)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from domain.errors import InvalidInput


class Version(StrEnum):
    V3_0 = "3.0"
    V3_1 = "3.1"


BASE_VIEWS: Final = frozenset({"left", "right", "back"})
VIEWS: Final = {Version.V3_0: BASE_VIEWS, Version.V3_1: BASE_VIEWS | {"top", "bottom", "left_front", "right_front"}}


def check_request(version: Version, *, has_prompt: bool, has_image: bool, low_poly: bool, views: Sequence[str]) -> None:
    """Text XOR image; LowPoly on 3.0 only; extra views need an image and a view type the version has."""
    if has_prompt and has_image:
        raise InvalidInput("input.prompt", "give a prompt or an image, never both")
    if not has_prompt and not has_image:
        raise InvalidInput("input.prompt", "give a prompt or an image (image_url or image_base64)")
    if low_poly and version is not Version.V3_0:
        raise InvalidInput("input.low_poly", f"low_poly is a 3.0 option; version {version} does not take it")
    if views and not has_image:
        raise InvalidInput("input.views", "extra views go with an image, not a prompt")
    seen: set[str] = set()
    for index, view in enumerate(views):
        if view not in VIEWS[version]:
            allowed = ", ".join(sorted(VIEWS[version]))
            raise InvalidInput(f"input.views.{index}.view_type", f"version {version} takes views {allowed}")
        if view in seen:
            raise InvalidInput(f"input.views.{index}.view_type", f"one image per view; {view} is given twice")
        seen.add(view)
