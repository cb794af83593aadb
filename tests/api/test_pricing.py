from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient


def test_pricing_lists_every_variant_with_spec_defaults(api: TestClient[Litestar]) -> None:
    listed = api.get("/v1/pricing").json()

    table = {(p["kind"], tuple(sorted(p["variant"].items()))): (p["price"], p["deadline_s"]) for p in listed}
    assert len(listed) == 10
    assert table[("basic_clean", ())] == (1, 120)
    assert table[("model_pose12", ())] == (1, 600)
    assert table[("video", (("duration", 15), ("model", "sora-2-pro"), ("resolution", "1080p")))] == (130, 900)
    assert table[("video", (("duration", 10), ("model", "sora-2"), ("resolution", "720p")))] == (15, 300)
    assert table[("model_3d", (("version", "3.1"),))] == (5, 86400)
