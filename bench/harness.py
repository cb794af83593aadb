"""One scenario's engine: a fresh KIE simulator, the workers' runtime, a Dramatiq worker serving every
queue on the real Redis broker, and the API in-process, on a flushed Redis. No reconciler runs, so
every admission below is the engine's own (at arrival or at release), never the fallback's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dramatiq
import httpx
from litestar import Litestar
from litestar.testing import TestClient

import workers.actors  # noqa: F401 - declares every actor, so install() binds them all
from api.app import create_app
from bench import scale
from bench.services import flush
from infra.resources import Resources
from infra.settings import Settings
from vendors.sim.kie import KieSim
from workers import broker, runtime
from workers.boot import vendor_clients

WORKER_THREADS = 16


@dataclass(frozen=True)
class Harness:
    resources: Resources
    sim: KieSim
    api: TestClient[Litestar]


@contextmanager
def running(settings: Settings) -> Iterator[Harness]:
    flush(settings)
    resources = Resources.open(settings)
    resources.storage.ensure_bucket()
    sim = kie_sim(settings)
    runtime.install(make_runtime(resources, httpx.MockTransport(sim.handle)))
    the_broker = broker.install(broker.redis_broker(settings.redis_url))
    worker = dramatiq.Worker(the_broker, worker_threads=WORKER_THREADS, worker_timeout=scale.worker_idle_ms())
    worker.start()
    try:
        with TestClient(app=create_app(resources)) as api:
            yield Harness(resources, sim, api)
    finally:
        worker.stop(timeout=10_000)
        the_broker.close()
        resources.close()


def kie_sim(settings: Settings) -> KieSim:
    """Fixed task times per variant; KIE's rate window (and result size) scaled like every vendor time."""
    sim = KieSim(api_keys=[settings.kie_api_key.reveal()], seed=1)
    only = {"waiting_s": 0.0, "queuing_s": 0.0}
    sim.configure(
        durations={
            "sora-2-pro-text-to-video/standard/10": {**only, "generating_s": scale.VIDEO_720P_S},
            "sora-2-pro-text-to-video/high/15": {**only, "generating_s": scale.VIDEO_1080P_S},
        },
        rate_window_s=sim.knobs.rate_window_s * scale.SCALE,
        **_scaled_media(sim),
    )
    return sim


def _scaled_media(sim: KieSim) -> dict[str, float]:
    """Result clips shrunk by the same scale, where the simulator renders real ones (`media_scale`):
    a full-size 1080p clip takes seconds to encode, which is no vendor's time."""
    names = {f.name for f in dataclasses.fields(sim.knobs)}
    return {"media_scale": scale.SCALE} if "media_scale" in names else {}


def make_runtime(resources: Resources, transport: httpx.BaseTransport) -> runtime.Runtime:
    """As `genq worker` builds it, but every vendor is the simulator and the settings are pinned (no
    admin overrides from the database)."""
    settings = resources.settings
    return runtime.Runtime(
        settings=settings,
        jobs=resources.jobs,
        accounts=resources.accounts,
        rooms=resources.rooms,
        storage=resources.storage,
        vendors=vendor_clients(settings, resources.jobs, transport=transport),
        downloads=httpx.Client(transport=transport),
        policy=runtime.Policy.from_settings(settings),
        audits=resources.audits,
        moderation={},
        membership=resources.membership,
        webhooks=resources.webhooks,
        webhook_http=httpx.Client(transport=transport),
    )


def wait_until(probe: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
