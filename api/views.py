"""How a job looks to its owner: in every answer, the event stream and webhook payloads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from domain.jobs import Job, JobKind, JobStatus
from domain.timings import timings
from infra import waiting
from infra.settings import Settings
from infra.storage import Storage


class Signer(Protocol):
    """What signs result links: the API's resources, or a worker's runtime."""

    @property
    def settings(self) -> Settings: ...

    @property
    def storage(self) -> Storage: ...


class ErrorOut(msgspec.Struct):
    code: str
    message: str


class ResultOut(msgspec.Struct):
    url: str
    content_type: str
    size: int


class QueueOut(msgspec.Struct):
    """Why a `queued` job waits (vendor_slots, plan_concurrency, vendor_busy, degraded, paused) and
    its place in its (vendor, model) room's order: 1 = next."""

    reason: str
    position: int


class TimingsOut(msgspec.Struct):
    """Seconds, from the job's stored state moves, each summed over every stay: `moderation` from
    creation to the verdict (in `pending_audit`); `queue` in `queued`, to admission (`submitting`);
    `vendor` from admission to the vendor's end (`submitting` + `processing`); `archiving` from
    there to the results' publication; `total` from creation to the end (or to now)."""

    moderation: float
    queue: float
    vendor: float
    archiving: float
    total: float


class JobOut(msgspec.Struct):
    id: str
    kind: JobKind
    status: JobStatus
    price: int
    priority: str
    external_id: str | None
    input: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime  # when the current stage times out: moderation, the wait, or the run
    finished_at: datetime | None = None
    error: ErrorOut | None = None
    results: list[ResultOut] | None = None
    queue: QueueOut | None = None
    timings: TimingsOut | None = None
    retry_of: str | None = None  # the job this one retries
    retried_by: list[str] | None = None  # the jobs that retry this one
    webhook_url: str | None = None  # where its events are delivered (GET /v1/jobs/{id}/deliveries)
    webhook_events: str | None = None  # completed | all
    results_expired_at: datetime | None = None  # retention deleted its files then (RESULT_RETENTION_DAYS)

    @classmethod
    def of(
        cls,
        job: Job,
        signer: Signer,
        *,
        queue: waiting.QueueInfo | None = None,
        moves: Sequence[tuple[JobStatus, datetime]] = (),
        retried_by: list[str] | None = None,
    ) -> JobOut:
        ttl = signer.settings.signed_url_ttl_s
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            price=job.price,
            priority=job.priority,
            external_id=job.external_id,
            input=redacted(job.input),
            created_at=job.created_at,
            updated_at=job.updated_at,
            deadline_at=job.deadline_at,
            finished_at=job.finished_at,
            error=ErrorOut(job.error_code, job.error_message or "") if job.error_code else None,
            results=[
                ResultOut(signer.storage.signed_url(f.key, ttl_s=ttl), f.content_type, f.size) for f in job.results
            ]
            if job.status is JobStatus.SUCCEEDED and job.results_expired_at is None
            else None,
            queue=QueueOut(queue.reason, queue.position) if queue is not None else None,
            timings=TimingsOut(**asdict(timings(moves, now=datetime.now(UTC)))) if moves else None,
            retry_of=job.retry_of,
            retried_by=retried_by or None,
            webhook_url=job.webhook_url,
            webhook_events=job.webhook_events,
            results_expired_at=job.results_expired_at,
        )


def redacted(job_input: Mapping[str, Any]) -> dict[str, Any]:
    """The input as submitted, with base64 images summarised instead of echoed back."""
    return {k: _summary(v) if k.endswith("_base64") else _redact_nested(v) for k, v in job_input.items()}


def _redact_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [redacted(item) if isinstance(item, Mapping) else item for item in value]
    return value


def _summary(value: Any) -> Any:
    return f"<base64, {len(value)} characters>" if isinstance(value, str) else value
