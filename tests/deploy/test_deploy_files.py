"""deploy/ stays in step with the code: alerts name real metrics, autoscaling names real queues."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import infra.metrics  # noqa: F401 - registers every genq_* metric
from workers.broker import NAMESPACE, QUEUES

DEPLOY = Path(__file__).parents[2] / "deploy"
SCRAPE_TIME = {  # ClusterCollector
    "genq_semaphore_in_flight",
    "genq_semaphore_limit",
    "genq_semaphore_effective_limit",
    "genq_waiting_jobs",
    "genq_oldest_waiting_seconds",
    "genq_queue_depth",
    "genq_jobs_in_state",
    "genq_oldest_in_state_seconds",
    "genq_ledger_mismatches",
    "genq_ledger_checked_timestamp_seconds",
    "genq_storage_bytes",
    "genq_storage_quota_bytes",
}


def known_metrics() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = {family.name + end for family in REGISTRY.collect() for end in ("", *suffixes.get(family.type, ()))}
    return names | SCRAPE_TIME


def test_every_alert_expression_uses_metrics_genq_exports() -> None:
    rules = [rule for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"] for rule in group["rules"]]

    used = {name for rule in rules for name in re.findall(r"genq_[a-z_]+", rule["expr"])}

    assert rules and used <= known_metrics(), used - known_metrics()


def test_autoscaling_watches_each_scaled_pools_queue() -> None:
    objects = [o for o in yaml.safe_load_all((DEPLOY / "k8s" / "keda.yaml").read_text()) if o["kind"] == "ScaledObject"]

    lists = {o["spec"]["triggers"][0]["metadata"]["listName"] for o in objects}

    assert lists == {f"{NAMESPACE}:{q}" for q in QUEUES if q != "maintenance"}


def test_procfile_has_one_line_per_pool_and_the_api() -> None:
    lines = (DEPLOY.parent / "Procfile").read_text().splitlines()

    assert [line.split(":")[0] for line in lines] == ["api", *QUEUES]


def expressions() -> list[str]:
    rules = [rule for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    panels = json.loads((DEPLOY / "grafana" / "genq.json").read_text())["panels"]
    return [rule["expr"] for rule in rules] + [t["expr"] for p in panels for t in p.get("targets", ())]


def test_no_sum_counts_a_cluster_gauge_once_per_api_replica() -> None:
    """Every API replica exports the scrape-time gauges with the same values (they are read from
    Redis and the database): a sum straight over them counts each one once per replica."""
    summed = re.compile(r"sum\s*(?:by\s*\([^)]*\)\s*)?\(\s*(" + "|".join(SCRAPE_TIME) + r")\b")

    assert [e for e in expressions() if summed.search(e)] == []


def test_the_readme_names_every_metric_genq_exports() -> None:
    counters = {f.name for f in REGISTRY.collect() if f.type == "counter"}
    families = {f.name + ("_total" if f.name in counters else "") for f in REGISTRY.collect()} | SCRAPE_TIME
    readme = (DEPLOY.parent / "README.md").read_text()

    assert sorted(name for name in families if name.startswith("genq_") and name not in readme) == []
