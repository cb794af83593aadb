"""Video jobs (KIE Sora 2): which model, resolution and length go together, and how many run at once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from domain import scheduling
from domain.errors import InvalidInput


class VideoModel(StrEnum):
    SORA_2 = "sora-2"
    SORA_2_PRO = "sora-2-pro"


class Resolution(StrEnum):
    P720 = "720p"
    P1080 = "1080p"


DURATIONS: Final = (10, 15)
RESOLUTIONS: Final[Mapping[VideoModel, tuple[Resolution, ...]]] = {
    VideoModel.SORA_2: (Resolution.P720,),
    VideoModel.SORA_2_PRO: (Resolution.P720, Resolution.P1080),
}
# SPEC §6's size weights are scheduling rules and live in `domain.scheduling`; kept here for callers.
RESOLUTION_WEIGHT: Final = scheduling.RESOLUTION_WEIGHT
DURATION_WEIGHT: Final = scheduling.DURATION_WEIGHT


def check_variant(model: VideoModel, resolution: Resolution, duration: int) -> None:
    if resolution not in RESOLUTIONS[model]:
        offered = ", ".join(RESOLUTIONS[model])
        raise InvalidInput("input.resolution", f"{model} offers {offered}, not {resolution}")
    if duration not in DURATIONS:
        raise InvalidInput("input.duration", f"duration is 10 or 15 seconds, not {duration}")


def variants() -> list[tuple[VideoModel, Resolution, int]]:
    return [(m, r, d) for m, rs in RESOLUTIONS.items() for r in rs for d in DURATIONS]


def effective_concurrency(model_limit: int, resolution: Resolution, duration: int, plan_cap: int | None = None) -> int:
    """max(1, floor(limit x resolution weight x duration weight)), capped by the plan (SPEC §6)."""
    weighted = math.floor(model_limit * RESOLUTION_WEIGHT[resolution] * DURATION_WEIGHT.get(duration, 1.0))
    effective = max(1, weighted)
    return min(effective, plan_cap) if plan_cap is not None else effective
