"""Every `genq_*` metric. Labels: vendor, kind, status, outcome, slot, queue.

Counters and histograms live in each process; with PROMETHEUS_MULTIPROC_DIR set (worker pools and
`genq run`), every process writes there and a scrape aggregates them all. Gauges that describe the
cluster (slot leases, queue depth) are read from Redis at scrape time, so they are true whichever
process answers the scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

JOBS_SUBMITTED = Counter("genq_jobs_submitted_total", "Jobs accepted by the API", ["kind"])
JOBS_FINISHED = Counter("genq_jobs_finished_total", "Jobs that reached a terminal state", ["kind", "status"])
JOB_DURATION = Histogram(
    "genq_job_duration_seconds",
    "Submit to terminal state",
    ["kind", "status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 86400),
)
STAGE_LATENCY = Histogram(
    "genq_stage_seconds", "Time a job spent in a stage", ["kind", "stage"], buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900)
)
VENDOR_CALLS = Counter("genq_vendor_calls_total", "Calls to vendors", ["vendor", "endpoint", "outcome"])
WEBHOOK_DELIVERIES = Counter(
    "genq_webhook_deliveries_total", "Webhook tries by outcome (delivered, retry, failed)", ["outcome"]
)
POLLS = Counter("genq_polls_total", "Vendor status polls", ["kind"])
REQUEUES = Counter("genq_requeues_total", "Jobs put back with a delay (slots full, vendor busy)", ["slot", "reason"])
CREDITS_CHARGED = Counter("genq_credits_charged_total", "Credits charged for jobs", ["kind"])
CREDITS_REFUNDED = Counter("genq_credits_refunded_total", "Credits refunded for jobs", ["kind"])
ARCHIVED_BYTES = Counter("genq_storage_archived_bytes_total", "Bytes copied into our storage", ["kind"])
RECONCILED = Counter("genq_reconciled_total", "Messages re-sent by the reconciler", ["status"])
ADMITTED = Counter("genq_admissions_total", "Jobs admitted from a waiting room to a vendor slot", ["slot", "priority"])
DEGRADATIONS = Counter(
    "genq_degradation_changes_total", "A room's effective limit lowered (down) or raised (up)", ["slot", "direction"]
)
UNKNOWN_OUTCOMES = Counter(
    "genq_vendor_unknown_outcomes_total",
    "Submits whose answer was lost (timeout after sending, worker died mid-call): possible orphaned vendor tasks",
    ["vendor"],
)
VENDOR_CANCELS = Counter("genq_vendor_cancels_total", "Vendor tasks genq no longer wanted", ["vendor", "outcome"])
LEASES_LOST = Counter(
    "genq_slot_leases_lost_total", "Renewals that found the lease lapsed and its slot taken by another", ["slot"]
)


class ClusterCollector(Collector):
    """Slot leases and queue depths, read from Redis when scraped."""

    def __init__(
        self,
        slot_limits: Callable[[], Mapping[str, int]],
        in_flight: Callable[[str], int],
        queue_depths: Callable[[], Mapping[str, int]],
    ) -> None:
        self._limits, self._in_flight, self._depths = slot_limits, in_flight, queue_depths

    def collect(self) -> Iterable[Metric]:
        limit = GaugeMetricFamily("genq_semaphore_limit", "Concurrency limit per vendor slot", labels=["slot"])
        held = GaugeMetricFamily("genq_semaphore_in_flight", "Live leases per vendor slot", labels=["slot"])
        depth = GaugeMetricFamily("genq_queue_depth", "Messages waiting per queue", labels=["queue"])
        try:
            for slot, value in self._limits().items():
                limit.add_metric([slot], value)
                held.add_metric([slot], self._in_flight(slot))
            for queue, count in self._depths().items():
                depth.add_metric([queue], count)
        except Exception:  # noqa: S110 - a scrape must answer even when Redis does not
            pass
        return [limit, held, depth]


def render(multiproc_dir: str, extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text: this process's metrics, or every process's in multiprocess mode.

    `multiproc_dir` is settings.prometheus_multiproc_dir; prometheus_client reads the same
    variable itself at import, so the process environment must carry it before start.
    """
    if multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Default(Collector):
    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()
