"""`GET /v1/pricing`: every job variant on offer, its price in credits and its deadline."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get
from litestar.di import NamedDependency

from domain import model3d, video
from domain.errors import InvalidInput
from domain.jobs import JobKind
from domain.pricing import PriceList


class PriceOut(msgspec.Struct):
    kind: JobKind
    variant: dict[str, Any]
    price: int
    deadline_s: int


def offers() -> list[tuple[JobKind, dict[str, Any]]]:
    plain: list[tuple[JobKind, dict[str, Any]]] = [(JobKind.BASIC_CLEAN, {}), (JobKind.MODEL_POSE12, {})]
    videos = [(JobKind.VIDEO, {"model": m, "resolution": r, "duration": d}) for m, r, d in video.variants()]
    models = [(JobKind.MODEL_3D, {"version": v}) for v in model3d.Version]
    return plain + videos + models


@get("/v1/pricing", sync_to_thread=False, tags=["pricing"])
def pricing(prices: NamedDependency[PriceList]) -> list[PriceOut]:
    listed = []
    for kind, variant in offers():
        try:
            terms = prices.quote(kind, variant)
        except InvalidInput:
            continue  # configured out of the offer
        listed.append(PriceOut(kind, variant, terms.price, terms.deadline_s))
    return listed
