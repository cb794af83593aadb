"""/metrics after real jobs: each stage, vendor call and room family has samples, and every metric the
dashboard and the alert rules name is exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dramatiq
import redis
import yaml
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from infra.db import users
from infra.resources import Resources
from tests.support import GARMENT, auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.runninghub import RunningHubSim
from workers import maintenance, runtime
from workers.runtime import Runtime

Client = TestClient[Litestar]
DEPLOY = Path(__file__).parents[2] / "deploy"
KINDS = [
    {"kind": "basic_clean", "input": {"image_url": GARMENT}},
    pose12_body(),
    {"kind": "video", "input": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a calm sea"}},
    {"kind": "model_3d", "input": {"version": "3.0", "prompt": "a red chair"}},
]


def scrape(api: Client) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Sample names -> (name, labels, value), from the exposition text as Prometheus reads it."""
    text = api.get("/metrics").text
    found: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.name, sample.labels, sample.value))
    return found


def named_in_deploy() -> set[str]:
    exprs = [
        t["expr"] for p in json.loads((DEPLOY / "grafana" / "genq.json").read_text())["panels"] for t in p["targets"]
    ]
    alerts = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    exprs += [rule["expr"] for group in alerts for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"genq_[a-z0-9_]+", expr)}


def test_every_new_family_has_samples_after_a_job_of_each_kind_and_the_dashboard_names_exist(
    api: Client, resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, redis_client: redis.Redis
) -> None:
    user = make_user(resources, credits=1000)
    for body in KINDS:
        terminal_job(resources, api.post("/v1/jobs", json=body, headers=auth(user)).json()["id"], timeout_s=60)
    rh_sim.configure(job_fail_rate=1.0)
    failed = terminal_job(resources, api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])
    wait_for(lambda: (failed.id, "refund") in {(j, k) for j, k, _ in resources.accounts.ledger(user.user_id)})
    resources.rooms.pause("runninghub:pose12", ms=600_000)  # one job left waiting: the room gauges say so
    api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    maintenance.check_ledger(runtime.current(), redis_client)  # the daily check, as maintenance runs it
    resources.settings = resources.settings.with_(storage_quota_bytes=10**9)
    samples = scrape(api)

    stages = {(s[1]["kind"], s[1]["stage"]) for s in samples["genq_stage_latency_seconds_count"]}
    assert {(body["kind"], stage) for body in KINDS for stage in ("queue", "vendor", "archiving")} <= stages
    assert {s[1]["kind"] for s in samples["genq_polls_per_job_count"]} >= {"model_pose12", "video", "model_3d"}
    assert {s[1]["vendor"] for s in samples["genq_vendor_call_seconds_count"]} >= {"runninghub", "kie", "hunyuan3d"}
    assert any(s[1]["code"] != "" for s in samples["genq_job_failures_total"])
    for gauge in ("genq_semaphore_effective_limit", "genq_waiting_jobs", "genq_oldest_waiting_seconds"):
        assert {s[1]["slot"] for s in samples[gauge]} >= {"runninghub:pose12", "kie:sora-2"}, gauge
    assert {"status": "queued"} in [labels for _, labels, _ in samples["genq_jobs_in_state"]]
    missing = {name for name in named_in_deploy() if not _exported(name, samples)}
    assert not missing, missing


def _exported(name: str, samples: dict[str, list[tuple[str, dict[str, str], float]]]) -> bool:
    """A counter or histogram named by its family or one of its series."""
    return any(name == sample or name == re.sub(r"_(total|bucket|count|sum)$", "", sample) for sample in samples)


def test_the_daily_ledger_check_reports_a_planted_mismatch_to_metrics(
    api: Client, resources: Resources, runtime_: Runtime, redis_client: redis.Redis
) -> None:
    honest, planted = make_user(resources, credits=5), make_user(resources, credits=5, phone="13800000001")
    assert maintenance.check_ledger(runtime_, redis_client) == 0
    with resources.engine.begin() as conn:  # a balance moved without its ledger row
        conn.execute(update(users).where(users.c.id == planted.user_id).values(balance=users.c.balance + 7))

    found = maintenance.check_ledger(runtime_, redis_client)
    [(_, labels, value)] = scrape(api)["genq_ledger_mismatches"]

    assert found == 1 and value == 1.0 and labels == {}
    assert [m[0] for m in resources.accounts.ledger_mismatches()] == [planted.user_id] != [honest.user_id]


def test_published_results_are_counted_against_the_storage_quota(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    resources.settings = resources.settings.with_(storage_quota_bytes=10**9)
    user = make_user(resources, credits=2)
    jobs = [terminal_job(resources, api.post("/v1/jobs", json=KINDS[0], headers=auth(user)).json()["id"]) for _ in "ab"]

    samples = scrape(api)

    assert samples["genq_storage_bytes"][0][2] == sum(f.size for job in jobs for f in job.results) > 0
    assert samples["genq_storage_quota_bytes"][0][2] == 10**9
