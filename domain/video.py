"""Video jobs (KIE Sora 2): which model, resolution and length go together.

How many run at once is a scheduling rule: `domain.scheduling` (size weights, admission thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

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


def check_variant(model: VideoModel, resolution: Resolution, duration: int) -> None:
    if resolution not in RESOLUTIONS[model]:
        offered = ", ".join(RESOLUTIONS[model])
        raise InvalidInput("input.resolution", f"{model} offers {offered}, not {resolution}")
    if duration not in DURATIONS:
        raise InvalidInput("input.duration", f"duration is 10 or 15 seconds, not {duration}")


def variants() -> list[tuple[VideoModel, Resolution, int]]:
    return [(m, r, d) for m, rs in RESOLUTIONS.items() for r in rs for d in DURATIONS]
