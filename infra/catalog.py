"""Settings turned into the domain's values: prices and deadlines, slot limits, poll schedules.

One place, so the API and the workers read the same numbers (and so a later admin override has
one place to land).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.jobs import JobKind
from domain.pricing import PatternTable, PriceList, variant_key
from domain.scheduling import PollSchedule
from infra.settings import Settings


def price_list(settings: Settings) -> PriceList:
    return PriceList(PatternTable.parse(settings.prices, int), PatternTable.parse(settings.deadlines, int))


def slot_limits(settings: Settings) -> dict[str, int]:
    """Concurrency limit per (vendor, model) slot."""
    return {
        "runninghub:pose12": settings.runninghub_concurrency,
        "tencent_ci:goods_matting": settings.ci_concurrency,
        "kie:sora-2": settings.kie_concurrency_sora_2,
        "kie:sora-2-pro": settings.kie_concurrency_sora_2_pro,
        "hunyuan3d:pro": settings.hunyuan3d_concurrency,
    }


def poll_schedule(settings: Settings, kind: JobKind, job_input: Mapping[str, Any]) -> PollSchedule:
    table = PatternTable(
        {
            "basic_clean": settings.poll_schedule_image,
            "model_pose12": settings.poll_schedule_image,
            "video/*/720p": settings.poll_schedule_video_720p,
            "video/*/1080p": settings.poll_schedule_video_1080p,
            "model_3d": settings.poll_schedule_3d,
        }
    )
    text = table.lookup(variant_key(kind, job_input)) or settings.poll_schedule_image
    return PollSchedule.parse(text, max_polls=settings.poll_max)
