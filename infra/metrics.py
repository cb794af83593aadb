"""Every `genq_*` metric. Labels: vendor, kind, status, outcome, slot, queue.

Counters and histograms live in each process; with PROMETHEUS_MULTIPROC_DIR set (worker pools and
`genq run`), every process writes there and a scrape aggregates them all. Gauges that describe the
cluster (slot leases, queue depth) are read from Redis at scrape time, so they are true whichever
process answers the scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

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
JOB_FAILURES = Counter(
    "genq_job_failures_total", "Jobs that ended without results, by error code", ["kind", "vendor", "code"]
)
JOB_DURATION = Histogram(
    "genq_job_duration_seconds",
    "Submit to terminal state",
    ["kind", "status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 86400),
)
STAGE_LATENCY = Histogram(
    "genq_stage_latency_seconds",
    "Time an ended job spent in each stage: moderation, queue (waiting for a slot), vendor, archiving",
    ["kind", "vendor", "stage"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400),
)
POLLS_PER_JOB = Histogram(
    "genq_polls_per_job", "Vendor status polls an ended job took", ["kind"], buckets=(0, 1, 2, 5, 10, 20, 50, 100, 500)
)
VENDOR_CALLS = Counter("genq_vendor_calls_total", "Calls to vendors", ["vendor", "endpoint", "outcome"])
VENDOR_CALL_LATENCY = Histogram(
    "genq_vendor_call_seconds",
    "Vendor call latency by outcome (ok, or the error's class)",
    ["vendor", "endpoint", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WEBHOOK_DELIVERIES = Counter(
    "genq_webhook_deliveries_total", "Webhook tries by outcome (delivered, retry, failed)", ["outcome"]
)
POLLS = Counter("genq_polls_total", "Vendor status polls", ["kind"])
REQUEUES = Counter("genq_requeues_total", "Jobs put back with a delay (slots full, vendor busy)", ["slot", "reason"])
CREDITS_CHARGED = Counter("genq_credits_charged_total", "Credits charged for jobs", ["kind"])
CREDITS_REFUNDED = Counter("genq_credits_refunded_total", "Credits refunded for jobs", ["kind"])
ARCHIVED_BYTES = Counter("genq_storage_archived_bytes_total", "Bytes copied into our storage", ["kind"])
RETENTION_DELETED = Counter(
    "genq_retention_deleted_total", "What retention deleted: jobs' result sets, and their bytes", ["what"]
)
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
# maintenance's periodic tasks (SPEC §10, seed 000); RETENTION_DELETED also counts uploads (`uploads`, `upload_bytes`)
RETENTION_ROWS = Counter(
    "genq_retention_rows_deleted_total",
    "Rows deleted with ended jobs past JOB_RETENTION_DAYS, by table (the ledger is never deleted)",
    ["table"],
)
TEMP_REMOVED = Counter(
    "genq_temp_removed_total",
    "The weekly temp sweep: local files and their bytes, abandoned multipart uploads aborted",
    ["what"],
)
VENDOR_IDS_EXPIRED = Counter(
    "genq_vendor_ids_expired_total",
    "Jobs ended (failed, refunded) because the vendor forgot their task id (Hunyuan 3D: 24 h)",
    ["vendor"],
)
USAGE_MONTHS_STORED = Counter("genq_usage_months_stored_total", "Closed months whose usage maintenance stored")
SLOTS_RECONCILED = Counter(
    "genq_slots_reconciled_total",
    "Slot leases in Redis whose job no longer held them in the database, released",
    ["vendor", "model"],
)


@dataclass(frozen=True)
class StateGauges:
    """Jobs in one non-terminal state as a scrape sees them (from the database)."""

    count: int
    oldest_s: float  # since the longest-idle one last moved or was heard from


@dataclass(frozen=True)
class RoomGauges:
    """One (vendor, model) room as a scrape sees it."""

    limit: int  # configured
    effective: int  # lower while degraded
    in_flight: int
    waiting: int
    oldest_wait_s: float  # the longest-waiting job's age; 0 when none waits


class ClusterCollector(Collector):
    """Rooms (limits, leases, waiting jobs) and queue depths, read from Redis when scraped."""

    def __init__(
        self,
        rooms: Callable[[], Mapping[str, RoomGauges]],
        queue_depths: Callable[[], Mapping[str, int]],
        states: Callable[[], Mapping[str, StateGauges]] = dict,
        ledger: Callable[[], tuple[int, float] | None] = lambda: None,
        storage: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        self._rooms, self._depths, self._states, self._ledger = rooms, queue_depths, states, ledger
        self._storage = storage

    def collect(self) -> Iterable[Metric]:
        families = {
            "limit": GaugeMetricFamily(
                "genq_semaphore_limit", "Configured concurrency per vendor slot", labels=["slot"]
            ),
            "effective": GaugeMetricFamily(
                "genq_semaphore_effective_limit",
                "Concurrency in force per vendor slot (lower while degraded)",
                labels=["slot"],
            ),
            "in_flight": GaugeMetricFamily("genq_semaphore_in_flight", "Live leases per vendor slot", labels=["slot"]),
            "waiting": GaugeMetricFamily(
                "genq_waiting_jobs", "Jobs waiting in each vendor slot's room", labels=["slot"]
            ),
            "oldest_wait_s": GaugeMetricFamily(
                "genq_oldest_waiting_seconds", "Age of the longest-waiting job per vendor slot", labels=["slot"]
            ),
        }
        depth = GaugeMetricFamily("genq_queue_depth", "Messages waiting per queue", labels=["queue"])
        in_state = GaugeMetricFamily("genq_jobs_in_state", "Jobs in each non-terminal state", labels=["status"])
        idle = GaugeMetricFamily(
            "genq_oldest_in_state_seconds", "How long the most idle job of each state has not moved", labels=["status"]
        )
        mismatches = GaugeMetricFamily(
            "genq_ledger_mismatches", "Users whose balance is not their ledger's sum, at the last daily check"
        )
        checked = GaugeMetricFamily("genq_ledger_checked_timestamp_seconds", "When the balance = ledger check last ran")
        held = GaugeMetricFamily("genq_storage_bytes", "Bytes of published results in our storage")
        quota = GaugeMetricFamily("genq_storage_quota_bytes", "STORAGE_QUOTA_BYTES (exported when set)")
        try:
            stored, allowed = self._storage()
            held.add_metric([], stored)
            if allowed:
                quota.add_metric([], allowed)
            if (last := self._ledger()) is not None:
                mismatches.add_metric([], last[0])
                checked.add_metric([], last[1])
            for status, state in self._states().items():
                in_state.add_metric([status], state.count)
                idle.add_metric([status], state.oldest_s)
            for slot, gauges in self._rooms().items():
                for name, family in families.items():
                    family.add_metric([slot], getattr(gauges, name))
            for queue, count in self._depths().items():
                depth.add_metric([queue], count)
        except Exception:  # noqa: S110 - a scrape must answer even when Redis does not
            pass
        return [*families.values(), depth, in_state, idle, mismatches, checked, held, quota]


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


GENERATION_VENDORS = ("runninghub", "kie", "hunyuan3d", "tencent_ci")


def _zeroes() -> None:
    """Series with known labels exist from the start at 0, so a rate() or an alert over them has data
    before the first event (Prometheus' advice for label values known in advance)."""
    for outcome in ("delivered", "retry", "failed"):
        WEBHOOK_DELIVERIES.labels(outcome)
    for vendor in GENERATION_VENDORS:
        UNKNOWN_OUTCOMES.labels(vendor)
        for outcome in ("cancelled", "not_supported", "failed"):
            VENDOR_CANCELS.labels(vendor, outcome)
    _maintenance_zeroes()


def _maintenance_zeroes() -> None:
    from infra.catalog import slot_limits  # the rooms' names; no settings are read
    from infra.retention import TABLES
    from infra.settings import Settings

    for what in ("jobs", "bytes", "uploads", "upload_bytes"):
        RETENTION_DELETED.labels(what)
    for table in TABLES:
        RETENTION_ROWS.labels(table)
    for what in ("files", "bytes", "multipart_uploads"):
        TEMP_REMOVED.labels(what)
    VENDOR_IDS_EXPIRED.labels("hunyuan3d")
    for room in slot_limits(Settings()):
        SLOTS_RECONCILED.labels(*room.split(":", 1))


_zeroes()
