"""Shared fixtures: real services, from the environment or embedded.

- Database: DATABASE_URL (PostgreSQL) when set, else an SQLite file per session; migrated with
  Alembic once, emptied between tests.
- Redis: REDIS_URL when set (the tests flush that database!), else an embedded redis-server.
- S3: S3_ENDPOINT_URL when set, else moto's server on a free port; a bucket per session.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
import redis
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine, delete

from api.app import create_app
from infra.db import api_keys, credit_ledger, job_events, jobs, make_engine, users
from infra.embedded import EmbeddedRedis, EmbeddedS3, free_port
from infra.migrate import upgrade
from infra.resources import Resources
from infra.settings import Secret, Settings
from vendors.runninghub import RunningHubClient
from vendors.sim.runninghub import RunningHubSim
from workers import broker as workers_broker
from workers import runtime


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


@pytest.fixture(scope="session")
def base_settings(
    env_settings: Settings, redis_url: str, s3_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings for in-process tests: real services, fast clocks, no waits between retries."""
    var_dir: Path = tmp_path_factory.mktemp("var")
    return env_settings.with_(
        var_dir=var_dir,
        redis_url=redis_url,
        s3_endpoint_url=s3_url,
        s3_bucket=f"genq-test-{uuid.uuid4().hex[:8]}",
        runninghub_base_url="http://runninghub.sim",
        runninghub_api_key=Secret("test-rh-key-" + uuid.uuid4().hex[:20]),
        retry_waits_s="0,0,0",
        requeue_delay_s=0.05,
        poll_schedule_image="0:0.05",
        reconcile_interval_s=0.2,
        log_format="json",
    )


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
        for table in (job_events, credit_ledger, jobs, api_keys, users):
            conn.execute(delete(table))


# --- the vendor simulator, the worker runtime, the broker, a worker --------------------------------


@pytest.fixture
def rh_sim(base_settings: Settings) -> RunningHubSim:
    sim = RunningHubSim(api_keys=[base_settings.runninghub_api_key.reveal()], seed=7)
    sim.configure(queued_s=0.05, running_s=0.2)
    return sim


@pytest.fixture
def runtime_(resources: Resources, rh_sim: RunningHubSim) -> Iterator[runtime.Runtime]:
    """The workers' runtime: real database, Redis and S3; RunningHub is its simulator in-process."""
    settings = resources.settings
    transport = httpx.MockTransport(rh_sim.handle)
    vendor_http = httpx.Client(base_url=settings.runninghub_base_url, transport=transport)
    rt = runtime.Runtime(
        settings=settings,
        jobs=resources.jobs,
        accounts=resources.accounts,
        slots=resources.slots,
        storage=resources.storage,
        vendors={"runninghub": RunningHubClient(vendor_http, api_key=settings.runninghub_api_key.reveal())},
        downloads=httpx.Client(transport=transport),
        policy=runtime.Policy.from_settings(settings),
        rng=random.Random(3),
    )
    yield runtime.install(rt)
    vendor_http.close()


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
