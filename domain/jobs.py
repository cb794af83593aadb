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

# Allowed moves. Beyond SPEC §3's diagram: SUBMITTING -> QUEUED is vendor back-pressure (or a
# worker that died mid-submit, re-driven by maintenance), and QUEUED -> TIMED_OUT is a job whose
# deadline passed while every vendor slot stayed taken.
NEXT: Final[Mapping[JobStatus, frozenset[JobStatus]]] = {
    S.PENDING_AUDIT: frozenset({S.QUEUED, S.AUDIT_FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.SUBMITTING, S.CANCELLED, S.TIMED_OUT}),
    S.SUBMITTING: frozenset({S.PROCESSING, S.QUEUED, S.FAILED}),
    S.PROCESSING: frozenset({S.ARCHIVING, S.FAILED, S.TIMED_OUT}),
    S.ARCHIVING: frozenset({S.SUCCEEDED, S.FAILED}),
}

TERMINAL: Final = frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.AUDIT_FAILED})
REFUNDABLE: Final = TERMINAL - {S.SUCCEEDED}
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

    @property
    def slot(self) -> str:
        """The (vendor, model) semaphore this job takes a lease in."""
        return f"{self.vendor}:{self.model}"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
