"""Fixtures for vendor clients against their simulators: a movable clock instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import SIM_MEDIA_SCALE
from vendors.runninghub import AppRun, NodeValue, RunningHubClient
from vendors.sim.runninghub import RunningHubSim

API_KEY = "rhk-3f9a0c2b7d4e4a1b9c8d7e6f5a4b3c2d"
WEBAPP_ID = 1947599512657453057


class FakeClock:
    """The simulators' clock: tests move time with `advance` instead of sleeping."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> RunningHubSim:
    sim = RunningHubSim(api_keys=[API_KEY], clock=clock, seed=7)
    sim.configure(media_scale=SIM_MEDIA_SCALE)
    return sim


@pytest.fixture
def http(sim: RunningHubSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://rh.sim", timeout=5) as client:
        yield client


@pytest.fixture
def client(http: httpx.Client) -> RunningHubClient:
    return RunningHubClient(http, api_key=API_KEY)


@pytest.fixture
def app_run() -> AppRun:
    """A valid run of the fixture app (nodes 6/text, 40/image, 25/seed; 12 PNG outputs)."""
    nodes = (
        NodeValue("6", "text", "a red fox"),
        NodeValue("40", "image", "api/3b1c.png"),
        NodeValue("25", "seed", "42"),
    )
    return AppRun(webapp_id=WEBAPP_ID, nodes=nodes)


# --- Tencent Cloud API 3.0 / Hunyuan 3D ------------------------------------------------------------

from vendors.hunyuan3d import Hunyuan3DClient  # noqa: E402
from vendors.sim.hunyuan3d import Hunyuan3DSim  # noqa: E402

TENCENT_SECRET_ID = "AKIDsimQ3f9a0c2b7d4e4a1b9c8d7e6f5a4b"
TENCENT_SECRET_KEY = "simSK7Hq2Lw9Zx4Vb6Nm1Pk8Rt3Ys5Uc0Ae"


@pytest.fixture
def h3d_sim(clock: FakeClock) -> Hunyuan3DSim:
    sim = Hunyuan3DSim(credentials={TENCENT_SECRET_ID: TENCENT_SECRET_KEY}, clock=clock, seed=7)
    sim.configure(media_scale=SIM_MEDIA_SCALE)
    return sim


@pytest.fixture
def h3d_http(h3d_sim: Hunyuan3DSim) -> Iterator[httpx.Client]:
    """The real endpoint's URL, answered by the simulator: the signature covers this Host."""
    transport = httpx.MockTransport(h3d_sim.handle)
    with httpx.Client(transport=transport, base_url="https://ai3d.tencentcloudapi.com", timeout=5) as client:
        yield client


@pytest.fixture
def h3d_client(h3d_http: httpx.Client, clock: FakeClock) -> Hunyuan3DClient:
    return Hunyuan3DClient(h3d_http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock)
