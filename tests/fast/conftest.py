"""The fast tier's services, all in this process: no server of any kind.

Overrides the fixtures of tests/conftest.py that start one: SQLite in a temporary folder (migrated
once), fakeredis (with Lua: the rooms' scripts run as on Redis), moto's in-process S3 (`mock_aws`),
a Dramatiq StubBroker with a worker joined by `drain`, and every simulator, the sample images and
the webhook receiver behind httpx.MockTransport. The environment is not read: DATABASE_URL and
REDIS_URL change nothing here. Package-scoped: under `make test` the slow tiers' services are
theirs, and moto's mock ends with this package.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import fakeredis
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from moto import mock_aws
from sqlalchemy import Engine

from infra.db import make_engine
from infra.images import Allowlist, ImageInspector
from infra.migrate import upgrade
from infra.resources import Resources
from infra.settings import Settings
from infra.storage import make_s3_client
from infra.tokens import RedisTokenCache
from tests.support import HOOKS_PORT, HookReceiver, SimTimes, Traffic, settings_for_tests
from vendors.sim.samples import SampleImages
from vendors.sim.tencent_ci import TencentCiSim
from workers import broker as workers_broker
from workers import messages, runtime
from workers.boot import moderation_platforms, sms_client, vendor_clients

S3_URL = "https://s3.amazonaws.com"  # what moto's mock_aws answers in-process
QUEUES = workers_broker.QUEUES


# --- services ------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def s3_client() -> Iterator[Any]:
    """One S3 client for the session, answered in-process by moto (made once: boto3 is slow to make)."""
    with mock_aws():
        yield make_s3_client(Settings.from_env({}), S3_URL)


@pytest.fixture(scope="package")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The suite's test settings on defaults (not the environment): SQLite under a temporary var/."""
    defaults = Settings.from_env({})
    return settings_for_tests(
        defaults, var_dir=tmp_path_factory.mktemp("var"), redis_url="redis://fakeredis.invalid/0", s3_url=S3_URL
    ).with_(
        poll_schedule_image="0:0.001",
        poll_schedule_video_720p="0:0.001",
        poll_schedule_video_1080p="0:0.001",
        poll_schedule_3d="0:0.001",
    )


@pytest.fixture(scope="package")
def engine(base_settings: Settings) -> Iterator[Engine]:
    """The tier's own SQLite, migrated once (not the suite's database when `make test` runs both)."""
    eng = make_engine(base_settings)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    """A Redis of its own for each test (fakeredis: empty, no server)."""
    return fakeredis.FakeRedis()


@pytest.fixture(scope="package")
def samples() -> SampleImages:
    return SampleImages()


@pytest.fixture(scope="package")
def samples_transport(samples: SampleImages) -> httpx.MockTransport:
    """The web that serves input images (tests.support.SAMPLES), in-process."""
    return httpx.MockTransport(samples.handle)


@pytest.fixture
def resources(
    base_settings: Settings,
    db: Engine,
    redis_client: fakeredis.FakeRedis,
    s3_client: Any,
    samples_transport: httpx.MockTransport,
) -> Iterator[Resources]:
    """What `Resources.open` builds, over this tier's in-process services."""
    images = ImageInspector(
        httpx.Client(transport=samples_transport),
        Allowlist.parse(base_settings.fetch_allowlist),
        aclient=httpx.AsyncClient(transport=samples_transport),
    )
    res = Resources.over(base_settings, engine=db, redis_client=redis_client, s3=s3_client, images=images)
    res.storage.ensure_bucket()
    yield res
    res.storage.delete(res.storage.keys(""))


# --- simulators: no vendor time passes, inputs fetched in-process -----------------------------------


@pytest.fixture
def sim_times() -> SimTimes:
    return SimTimes(queued_s=0, running_s=0)


@pytest.fixture
def sim_fetch(samples: SampleImages) -> Callable[[str], bytes | None]:
    def fetch(url: str) -> bytes | None:
        response = samples.handle(httpx.Request("GET", url))
        return response.content if response.is_success else None

    return fetch


@pytest.fixture
def ci_sim(base_settings: Settings, samples: SampleImages) -> TencentCiSim:
    def fetch(url: str) -> tuple[bytes, str]:
        response = samples.handle(httpx.Request("GET", url)).raise_for_status()
        return response.content, response.headers.get("content-type", "")

    secret = base_settings.tencent_secret_key.reveal()
    return TencentCiSim(credentials={base_settings.tencent_secret_id: secret}, fetch=fetch)


@pytest.fixture
def hooks() -> HookReceiver:
    """The webhook receiver, in-process: deliveries reach `handle` through httpx.MockTransport."""
    return HookReceiver(HOOKS_PORT)


# --- the runtime, the broker, a worker ------------------------------------------------------------


@pytest.fixture
def runtime_(
    resources: Resources, sims: httpx.MockTransport, samples_transport: httpx.MockTransport, hooks: HookReceiver
) -> Iterator[runtime.Runtime]:
    """The workers' runtime over this tier's services; vendor outputs and inputs fetched in-process."""

    def downloads(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1":
            return samples_transport.handle_request(request)
        return sims.handle_request(request)

    settings = resources.settings
    rt = runtime.Runtime(
        settings=settings,
        jobs=resources.jobs,
        accounts=resources.accounts,
        rooms=resources.rooms,
        storage=resources.storage,
        vendors=vendor_clients(settings, resources.jobs, transport=sims),
        downloads=httpx.Client(transport=httpx.MockTransport(downloads)),
        policy=runtime.Policy.from_settings(settings, resources.config),
        audits=resources.audits,
        moderation=moderation_platforms(settings, RedisTokenCache(resources.redis), transport=sims),
        membership=resources.membership,
        webhooks=resources.webhooks,
        webhook_http=httpx.Client(transport=httpx.MockTransport(hooks.handle)),
        login=resources.login,
        sms=sms_client(settings, transport=sims),
        meter=resources.meter,
        rng=random.Random(3),
    )
    resources.jobs.announce_with(messages.webhooks)
    yield runtime.install(rt)


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    """A StubBroker with every actor bound to it; `Traffic` records what it was given."""
    stub = workers_broker.stub_broker()
    stub.add_middleware(Traffic())
    workers_broker.install(stub)
    yield stub
    stub.close()


@pytest.fixture
def sent(broker: StubBroker) -> Traffic:
    return next(m for m in broker.middleware if isinstance(m, Traffic))


@pytest.fixture
def worker(broker: StubBroker, runtime_: runtime.Runtime) -> Iterator[dramatiq.Worker]:
    the_worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=10)
    the_worker.start()
    yield the_worker
    the_worker.stop()


@pytest.fixture
def drain(broker: StubBroker, worker: dramatiq.Worker) -> Callable[[], None]:
    """Run every message, and every message they send, until all queues are empty (a message that
    dead-letters raises here)."""

    def run() -> None:
        while True:
            for queue in QUEUES:
                broker.join(queue, timeout=60_000)
            worker.join()
            if not any(broker.queues[q].unfinished_tasks for q in broker.queues):
                return

    return run
