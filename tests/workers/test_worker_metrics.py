"""A worker pool's own /metrics on WORKER_METRICS_PORT: what a scraper reaching each pod reads.

The pool is `workers.boot.run`, as `genq worker` runs it, in a thread of the test with a stop Event;
RunningHub is its simulator served on loopback (the pool's runtime reaches vendors over HTTP).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from domain.jobs import JobStatus
from infra.embedded import free_port
from infra.metrics import ClusterCollector
from infra.resources import Resources
from infra.serving import ServerThread
from infra.settings import Settings, SettingsError
from tests.support import auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.common import asgi_app
from vendors.sim.runninghub import RunningHubSim
from workers import boot, metrics_server

POOLS = ["moderation", "generation", "polling", "archiving", "refunds", "webhooks"]
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Samples:
    """Sample name -> (labels, value), as Prometheus reads the exposition on the port."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).raise_for_status().text
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


def observed(port: int, kind: str, *, since: Samples) -> Samples | None:
    """A scrape once the ended job of `kind` is in it (its stages are observed just after it ends)."""
    samples = scrape(port)
    grown = total(samples, "genq_polls_per_job_count", kind=kind) > total(since, "genq_polls_per_job_count", kind=kind)
    return samples if grown else None


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def runninghub_url(rh_sim: RunningHubSim) -> Iterator[str]:
    server = ServerThread(asgi_app(rh_sim.handle), host="127.0.0.1", port=free_port()).start()
    yield server.url
    server.stop()


@pytest.fixture
def pool_port(base_settings: Settings, runninghub_url: str, broker: dramatiq.Broker) -> Iterator[int]:
    """Every pool but maintenance in one `boot.run`, serving its metrics on a free port until stopped."""
    port, stop = free_port(), threading.Event()
    settings = base_settings.with_(worker_metrics_port=port, runninghub_base_url=runninghub_url)
    pool = threading.Thread(target=boot.run, args=(settings, POOLS), kwargs={"threads": 2, "stop": stop}, daemon=True)
    pool.start()
    wait_for(lambda: answers(port), timeout_s=30, what="the pool's metrics port")
    yield port
    stop.set()
    pool.join(30)
    assert not pool.is_alive() and not answers(port), "the pool and its metrics server stop together"


def test_a_worker_pool_serves_its_own_families_and_a_jobs_observations_on_its_port(
    api: TestClient[Litestar], resources: Resources, pool_port: int
) -> None:
    before = scrape(pool_port)
    user = make_user(resources, credits=10)

    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    job = terminal_job(resources, job_id, timeout_s=60)
    after = wait_for(lambda: observed(pool_port, job.kind, since=before), what="the job's observations on the port")

    assert job.status is JobStatus.SUCCEEDED
    assert {labels["outcome"] for labels, _ in before["genq_webhook_deliveries_total"]} >= {"delivered", "failed"}
    for name, labels in (
        ("genq_stage_latency_seconds_count", {"kind": "model_pose12", "vendor": "runninghub", "stage": "vendor"}),
        ("genq_vendor_call_seconds_count", {"vendor": "runninghub", "outcome": "ok"}),
    ):
        assert total(after, name, **labels) > total(before, name, **labels), name
    cluster = {family.name for family in ClusterCollector(dict, dict).collect()}  # the API's, from Redis
    assert cluster & set(after) == set()


def test_of_processes_given_one_port_the_first_serves_and_another_takes_over_when_it_stops() -> None:
    port = free_port()
    first = metrics_server.MetricsServer(port, "").start()
    second = metrics_server.MetricsServer(port, "", retry_s=0.05).start()
    both = (first.serving, second.serving)

    first.close()
    wait_for(lambda: second.serving, what="the second process to take the port over")
    served = answers(port)
    second.close()

    assert both == (True, False)
    assert served and not answers(port) and not (first.serving or second.serving)


def test_worker_metrics_port_zero_serves_nothing_and_a_non_port_fails_naming_it() -> None:
    assert metrics_server.start(Settings()) is None
    with pytest.raises(SettingsError, match="WORKER_METRICS_PORT"):
        Settings.from_env({"WORKER_METRICS_PORT": "65536"})
