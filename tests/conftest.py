"""Shared fixtures: real services, from the environment or embedded; and the tiers.

Tiers (markers, one per test, from its folder unless the test names one): `fast` (tests/unit/,
tests/fast/, client/tests/: no server of any kind; `make test-fast`), `slow` (tests/api/, infra/,
workers/, vendors/, deploy/: real PostgreSQL or SQLite, Redis, S3, loopback servers), `integration`
(tests/integration/: `genq run` and worker processes), `browser` (tests/browser/: Chromium).
`make test` runs them all; `pytest -m fast` (or `slow`, `integration`, `browser`) one of them.

- Database: DATABASE_URL (PostgreSQL) when set, else an SQLite file per session; migrated with
  Alembic once, emptied between tests.
- Redis: REDIS_URL when set (the tests flush that database!), else an embedded redis-server.
- S3: S3_ENDPOINT_URL when set, else moto's server on a free port; a bucket per session.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
import redis
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine, delete

import workers.actors  # noqa: F401 - declares every actor for install()
from api.app import create_app
from infra.db import (
    admin_actions,
    api_keys,
    batches,
    config_changes,
    config_overrides,
    credit_ledger,
    job_events,
    jobs,
    make_engine,
    moderation_audits,
    monthly_usage,
    orders,
    sms_codes,
    usage_months,
    users,
    vendor_attempts,
    webhook_attempts,
    webhook_deliveries,
    webhook_secrets,
)
from infra.embedded import EmbeddedRedis, EmbeddedS3, free_port
from infra.migrate import upgrade
from infra.resources import Resources
from infra.serving import ServerThread
from infra.settings import Settings
from infra.tokens import RedisTokenCache
from tests.support import (
    HOOKS_PORT,
    SAMPLES,
    SAMPLES_PORT,
    SIM_MEDIA_SCALE,
    HookReceiver,
    SimTimes,
    settings_for_tests,
)
from vendors.sim.common import asgi_app
from vendors.sim.douyin import DouyinSim
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.kie import KieSim
from vendors.sim.media import fetch_bytes
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.samples import SampleImages
from vendors.sim.tencent_ci import TencentCiSim
from vendors.sim.tencent_sms import SmsSim
from vendors.sim.wechat import WechatSim
from workers import broker as workers_broker
from workers import messages, runtime
from workers.boot import moderation_platforms, sms_client, vendor_clients, webhook_client


@pytest.fixture(scope="session")
def env_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def redis_url(env_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if env_settings.redis_url:
        yield env_settings.redis_url
        return
    server = EmbeddedRedis(free_port(), workdir=tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def s3_url(env_settings: Settings) -> Iterator[str]:
    if env_settings.s3_endpoint_url:
        yield env_settings.s3_endpoint_url
        return
    server = EmbeddedS3(free_port()).start()
    yield server.url
    server.stop()


TIERS = ("fast", "slow", "integration", "browser")
TIER_OF_FOLDER = {"unit": "fast", "fast": "fast", "integration": "integration", "browser": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test under tests/ without a tier marker gets its folder's tier (`slow` by default)."""
    here = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(here) or any(item.get_closest_marker(t) for t in TIERS):
            continue
        folder = item.path.relative_to(here).parts[0]
        item.add_marker(TIER_OF_FOLDER.get(folder, "slow"))


@pytest.fixture(autouse=True)
def _samples_unless_fast(request: pytest.FixtureRequest) -> None:
    """Every test outside the fast tier may fetch input images from SAMPLES: the loopback server
    starts with the first of them. A fast test starts no server (its images come in-process)."""
    if request.node.get_closest_marker("fast") is None:
        request.getfixturevalue("sample_images")


@pytest.fixture(scope="session")
def sample_images() -> Iterator[str]:
    """The loopback stand-in for the web that serves input images (tests.support.SAMPLES)."""
    server = ServerThread(asgi_app(SampleImages().handle), host="127.0.0.1", port=SAMPLES_PORT).start()
    yield SAMPLES
    server.stop()


@pytest.fixture(scope="session")
def hook_server() -> Iterator[HookReceiver]:
    receiver = HookReceiver(HOOKS_PORT).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def hooks(hook_server: HookReceiver) -> HookReceiver:
    """A webhook receiver on loopback (allow-listed in the settings), emptied for each test."""
    hook_server.reset()
    return hook_server


@pytest.fixture(scope="session")
def base_settings(
    env_settings: Settings, redis_url: str, s3_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings for in-process tests: real services, fast clocks, no waits between retries."""
    return settings_for_tests(env_settings, var_dir=tmp_path_factory.mktemp("var"), redis_url=redis_url, s3_url=s3_url)


@pytest.fixture(scope="session")
def engine(base_settings: Settings) -> Iterator[Engine]:
    eng = make_engine(base_settings)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    _empty(engine)
    yield engine


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def resources(base_settings: Settings, db: Engine, redis_client: redis.Redis) -> Iterator[Resources]:
    res = Resources.open(base_settings)
    res.storage.ensure_bucket()
    yield res
    res.close()


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (
            monthly_usage,
            usage_months,
            webhook_attempts,
            webhook_deliveries,
            webhook_secrets,
            admin_actions,
            config_changes,
            config_overrides,
            orders,
            sms_codes,
            moderation_audits,
            job_events,
            vendor_attempts,
        ):
            conn.execute(delete(table))
        for table in (credit_ledger, jobs, batches, api_keys, users):
            conn.execute(delete(table))


# --- the vendor simulator, the worker runtime, the broker, a worker --------------------------------


@pytest.fixture
def sim_times() -> SimTimes:
    """How long the vendor simulators' tasks take: short but real here; the fast tier makes it 0."""
    return SimTimes(queued_s=0.05, running_s=0.2)


@pytest.fixture
def sim_fetch() -> Callable[[str], bytes | None]:
    """How the simulators fetch a job's input image: over HTTP here; in-process in the fast tier."""
    return fetch_bytes


@pytest.fixture
def rh_sim(base_settings: Settings, sim_times: SimTimes, sim_fetch: Callable[[str], bytes | None]) -> RunningHubSim:
    sim = RunningHubSim(api_keys=[base_settings.runninghub_api_key.reveal()], seed=7, fetch=sim_fetch)
    sim.configure(queued_s=sim_times.queued_s, running_s=sim_times.running_s, media_scale=SIM_MEDIA_SCALE)
    return sim


@pytest.fixture
def hy_sim(base_settings: Settings, sim_times: SimTimes) -> Hunyuan3DSim:
    secret = base_settings.tencent_secret_key.reveal()
    sim = Hunyuan3DSim(credentials={base_settings.tencent_secret_id: secret}, seed=7)
    sim.configure(queued_s=sim_times.queued_s, running_s=sim_times.running_s, media_scale=SIM_MEDIA_SCALE)
    return sim


@pytest.fixture
def kie_callbacks() -> list[tuple[str, dict[str, str], bytes]]:
    """What the KIE simulator delivered (url, headers, body); tests post them where they like."""
    return []


@pytest.fixture
def kie_sim(
    base_settings: Settings,
    kie_callbacks: list[tuple[str, dict[str, str], bytes]],
    sim_times: SimTimes,
    sim_fetch: Callable[[str], bytes | None],
) -> KieSim:
    sim = KieSim(
        api_keys=[base_settings.kie_api_key.reveal()],
        hmac_key=base_settings.kie_webhook_hmac_key.reveal(),
        seed=7,
        deliver=lambda url, headers, body: kie_callbacks.append((url, dict(headers), body)),
        fetch=sim_fetch,
    )
    waiting = sim_times.queued_s
    sim.configure(waiting_s=waiting, queuing_s=waiting, generating_s=sim_times.running_s, media_scale=SIM_MEDIA_SCALE)
    return sim


@pytest.fixture
def ci_sim(base_settings: Settings) -> TencentCiSim:
    return TencentCiSim(credentials={base_settings.tencent_secret_id: base_settings.tencent_secret_key.reveal()})


@pytest.fixture
def wechat_pushes() -> list[tuple[str, dict[str, str], bytes]]:
    """What the WeChat simulator pushed (url, headers, body); tests post them where they like."""
    return []


@pytest.fixture
def wechat_sim(base_settings: Settings, wechat_pushes: list[tuple[str, dict[str, str], bytes]]) -> WechatSim:
    return WechatSim(
        appid=base_settings.wechat_appid,
        secret=base_settings.wechat_secret.reveal(),
        push_token=base_settings.wechat_push_token.reveal(),
        push_url="http://testserver.local/v1/callbacks/moderation/wechat",
        seed=7,
        deliver=lambda url, headers, body: wechat_pushes.append((url, dict(headers), body)),
    )


@pytest.fixture
def douyin_sim(base_settings: Settings) -> DouyinSim:
    return DouyinSim(appid=base_settings.douyin_appid, secret=base_settings.douyin_secret.reveal(), seed=7)


@pytest.fixture
def sms_sim(base_settings: Settings) -> SmsSim:
    secret = base_settings.tencent_secret_key.reveal()
    return SmsSim(sdk_app_id=base_settings.sms_sdk_app_id, credentials={base_settings.tencent_secret_id: secret})


@pytest.fixture
def sims(
    base_settings: Settings,
    rh_sim: RunningHubSim,
    hy_sim: Hunyuan3DSim,
    kie_sim: KieSim,
    ci_sim: TencentCiSim,
    wechat_sim: WechatSim,
    douyin_sim: DouyinSim,
    sms_sim: SmsSim,
) -> httpx.MockTransport:
    """Every vendor simulator behind one transport, routed by host as the real hosts would be."""
    by_host = {
        httpx.URL(base_settings.runninghub_base_url).host: rh_sim.handle,
        httpx.URL(base_settings.hunyuan3d_base_url).host: hy_sim.handle,
        httpx.URL(base_settings.kie_base_url).host: kie_sim.handle,
        httpx.URL(base_settings.ci_bucket_url).host: ci_sim.handle,
        httpx.URL(base_settings.wechat_base_url).host: wechat_sim.handle,
        httpx.URL(base_settings.douyin_base_url).host: douyin_sim.handle,
        httpx.URL(base_settings.sms_base_url).host: sms_sim.handle,
    }
    return httpx.MockTransport(lambda request: by_host[request.url.host](request))


@pytest.fixture
def runtime_(resources: Resources, sims: httpx.MockTransport) -> Iterator[runtime.Runtime]:
    """The workers' runtime: real database, Redis and S3; every vendor is its simulator in-process."""
    rt = runtime.Runtime(
        settings=resources.settings,
        jobs=resources.jobs,
        accounts=resources.accounts,
        rooms=resources.rooms,
        storage=resources.storage,
        vendors=vendor_clients(resources.settings, resources.jobs, transport=sims),
        downloads=httpx.Client(transport=sims),
        policy=runtime.Policy.from_settings(resources.settings, resources.config),
        audits=resources.audits,
        moderation=moderation_platforms(resources.settings, RedisTokenCache(resources.redis), transport=sims),
        membership=resources.membership,
        webhooks=resources.webhooks,
        webhook_http=webhook_client(resources.settings),  # real HTTP: receivers listen on loopback
        login=resources.login,
        sms=sms_client(resources.settings, transport=sims),
        meter=resources.meter,
        rng=random.Random(3),
    )
    resources.jobs.announce_with(messages.webhooks)
    yield runtime.install(rt)


@pytest.fixture
def broker(redis_url: str, redis_client: redis.Redis) -> Iterator[dramatiq.Broker]:
    """A real Redis broker (emptied first) with every actor bound to it."""
    the_broker = workers_broker.install(workers_broker.redis_broker(redis_url))
    yield the_broker
    the_broker.close()


@pytest.fixture
def worker(broker: dramatiq.Broker, runtime_: runtime.Runtime) -> Iterator[dramatiq.Worker]:
    """Every pool's actors, served in this process by one Dramatiq worker."""
    the_worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=50)
    the_worker.start()
    yield the_worker
    the_worker.stop(timeout=5_000)


@pytest.fixture
def api(resources: Resources, broker: dramatiq.Broker) -> Iterator[TestClient[Litestar]]:
    with TestClient(app=create_app(resources)) as client:
        yield client
