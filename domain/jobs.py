"""Job kinds, statuses and the state machine of SPEC §3. Pure: no clock, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from domain.errors import IllegalTransition


class JobKind(StrEnum):
    BASIC_CLEAN = "basic_clean"
    MODEL_POSE12 = "model_pose12"
    VIDEO = "video"
    MODEL_3D = "model_3d"


class JobStatus(StrEnum):
    PENDING_AUDIT = "pending_audit"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    PROCESSING = "processing"
    ARCHIVING = "archiving"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    AUDIT_FAILED = "audit_failed"


S = JobStatus

# Allowed moves (SPEC §3). Beyond the diagram:
# - PENDING_AUDIT -> FAILED: moderation never answered before its own deadline.
# - QUEUED -> SUBMITTING is admission: a vendor slot was taken for the job's next attempt.
# - QUEUED -> TIMED_OUT: the job waited longer than the maximum wait.
# - SUBMITTING -> QUEUED: vendor back-pressure, a transient error to back off from, or a dead
#   submitter whose lease lapsed (taken back by maintenance).
# - SUBMITTING | PROCESSING -> CANCELLED: the owner's cancel (the vendor's cancel called where it
#   exists). ARCHIVING is too late to cancel: the vendor's work is done and is being copied.
NEXT: Final[Mapping[JobStatus, frozenset[JobStatus]]] = {
    S.PENDING_AUDIT: frozenset({S.QUEUED, S.AUDIT_FAILED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.SUBMITTING, S.CANCELLED, S.TIMED_OUT}),
    S.SUBMITTING: frozenset({S.PROCESSING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.PROCESSING: frozenset({S.ARCHIVING, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.ARCHIVING: frozenset({S.SUCCEEDED, S.FAILED}),
}

TERMINAL: Final = frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.AUDIT_FAILED})
REFUNDABLE: Final = TERMINAL - {S.SUCCEEDED}
RETRYABLE: Final = frozenset({S.FAILED, S.TIMED_OUT, S.CANCELLED})  # audit_failed would be rejected again
ACTIVE: Final = frozenset(S) - TERMINAL


def can_move(current: JobStatus, target: JobStatus) -> bool:
    return target in NEXT.get(current, frozenset())


def check_transition(job_id: str, current: JobStatus, target: JobStatus) -> None:
    if not can_move(current, target):
        raise IllegalTransition(job_id, current, target)


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status a job may be in for `target` to be a legal next move."""
    return frozenset(src for src, dests in NEXT.items() if target in dests)


@dataclass(frozen=True)
class ResultFile:
    """One archived output: a key in our own storage, never a vendor URL."""

    key: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Job:
    id: str
    user_id: str
    kind: JobKind
    status: JobStatus
    input: Mapping[str, Any]
    price: int
    vendor: str
    model: str
    deadline_at: datetime
    created_at: datetime
    updated_at: datetime
    vendor_task_id: str | None = None
    results: tuple[ResultFile, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    polls: int = 0
    processing_at: datetime | None = None
    finished_at: datetime | None = None
    moderation_platform: str | None = None
    fence: int = 0  # the token every message for this job carries; bumped by each claim and move
    attempt: int = 0  # admissions so far; the vendor slot is held by (id, attempt)
    priority: str = "interactive"  # domain.scheduling.PriorityClass
    deadline_s: int = 0  # the kind's run budget, counted from admission
    admitted_at: datetime | None = None
    not_before: datetime | None = None  # a back-off: not admitted again before this
    submit_failures: int = 0  # transient submit failures so far (each one backs off)
    archive_attempts: int = 0
    external_id: str | None = None  # the client's own reference, unique per user
    retry_of: str | None = None  # the job this one retries
    webhook_url: str | None = None  # where its events are delivered
    webhook_events: str | None = None  # domain.webhooks.EventFilter
    batch_id: str | None = None  # the batch it is a row of
    batch_row: int | None = None  # that row's index (0-based); a retried row's jobs share it
    results_expired_at: datetime | None = None  # retention deleted its stored files then

    @property
    def slot(self) -> str:
        """The (vendor, model) room this job waits in and takes a slot lease in."""
        return f"{self.vendor}:{self.model}"

    @property
    def holder(self) -> str:
        """Who holds the slot: this job's current attempt, never the job as such."""
        return f"{self.id}:{self.attempt}"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
