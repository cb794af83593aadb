"""Settings turned into the domain's values: prices and deadlines, slot limits, poll schedules.

One place, so the API and the workers read the same numbers (and so a later admin override has
one place to land).
"""

from __future__ import annotations

from domain.jobs import JobKind
from domain.polling import PollSchedule
from domain.pricing import PriceList, Terms
from infra.settings import Settings


def price_list(settings: Settings) -> PriceList:
    return PriceList({JobKind.MODEL_POSE12: Terms(settings.price_model_pose12, settings.deadline_model_pose12_s)})


def slot_limits(settings: Settings) -> dict[str, int]:
    """Concurrency limit per (vendor, model) slot."""
    return {"runninghub:pose12": settings.runninghub_concurrency}


def poll_schedules(settings: Settings) -> dict[JobKind, PollSchedule]:
    image = PollSchedule.parse(settings.poll_schedule_image, max_polls=settings.poll_max)
    return {JobKind.MODEL_POSE12: image}
