"""Operator endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import MediaType, Response, get
from litestar.di import NamedDependency

from api import docs
from api.errors import error_body
from infra import catalog, metrics, waiting
from infra.accounts import last_ledger_check
from infra.resources import Resources
from workers.broker import NAMESPACE, QUEUES


@get("/healthz", sync_to_thread=False, tags=["ops"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    sync_to_thread=True,
    tags=["ops"],
    responses=docs.errors((503, "The database or Redis does not answer: `details.checks` says which.")),
)
def readyz(resources: NamedDependency[Resources]) -> Response[dict[str, object]]:
    checks = {"database": resources.database_ok(), "redis": resources.redis_ok()}
    if all(checks.values()):
        return Response({"ready": True, "checks": checks})
    down = ", ".join(name for name, ok in checks.items() if not ok)
    body = error_body("unavailable", f"not ready: {down} does not answer", {"checks": checks})
    return Response(body, status_code=503, headers={"Retry-After": "5"})


@get("/metrics", sync_to_thread=True, tags=["ops"], media_type=MediaType.TEXT)
def metrics_endpoint(resources: NamedDependency[Resources]) -> Response[bytes]:
    body, content_type = metrics.render(resources.settings.prometheus_multiproc_dir, [cluster_collector(resources)])
    return Response(body, media_type=content_type)


def cluster_collector(resources: Resources) -> metrics.ClusterCollector:

    def depths() -> dict[str, int]:
        client = resources.redis
        return {q: int(client.llen(f"{NAMESPACE}:{q}")) + int(client.llen(f"{NAMESPACE}:{q}.DQ")) for q in QUEUES}

    def rooms() -> dict[str, metrics.RoomGauges]:
        settings, now = resources.effective(), datetime.now(UTC)
        found = {}
        for room in catalog.slot_limits(settings):
            limit, effective = waiting.limits(settings, resources.rooms, room, now=now)
            snapshot = resources.rooms.snapshot(room)
            oldest = min((e.arrival for e in snapshot.waiting), default=now.timestamp())
            found[room] = metrics.RoomGauges(
                limit, effective, snapshot.in_flight, len(snapshot.waiting), max(now.timestamp() - oldest, 0.0)
            )
        return found

    def states() -> dict[str, metrics.StateGauges]:
        now = datetime.now(UTC)
        return {
            status: metrics.StateGauges(count, max((now - oldest).total_seconds(), 0.0))
            for status, (count, oldest) in resources.jobs.idle_by_state().items()
        }

    def storage() -> tuple[int, int]:
        return resources.meter.held(), resources.effective().storage_quota_bytes

    return metrics.ClusterCollector(rooms, depths, states, lambda: last_ledger_check(resources.redis), storage)
