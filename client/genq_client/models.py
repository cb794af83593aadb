"""The API's answers as frozen dataclasses: `Job` and its parts, `JobPage`.

Parsing is forward compatible: a field the server adds later is kept in `Job.extra` (and printed
back by `to_dict`), never an error; the nested parts ignore theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

T = TypeVar("T")

TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "timed_out", "cancelled", "audit_failed"})


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Result:
    """One output file: `url` is a short-lived signed URL into genq's storage."""

    url: str
    content_type: str
    size: int


@dataclass(frozen=True)
class QueuePlace:
    """Why a queued job waits (`vendor_slots`, `plan_concurrency`, ...) and its place: 1 = next."""

    reason: str
    position: int


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage, from the job's stored state moves."""

    moderation: float
    queue: float
    vendor: float
    archiving: float
    total: float


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    status: str
    price: int
    priority: str
    external_id: str | None
    input: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    finished_at: datetime | None = None
    error: JobError | None = None
    results: tuple[Result, ...] | None = None
    queue: QueuePlace | None = None
    timings: Timings | None = None
    retry_of: str | None = None
    retried_by: tuple[str, ...] | None = None
    webhook_url: str | None = None  # where the job's events are delivered
    webhook_events: str | None = None  # "completed" (the terminal event only) or "all"
    results_expired_at: datetime | None = None  # the server's retention deleted the files then
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            id=data["id"],
            kind=data["kind"],
            status=data["status"],
            price=data["price"],
            priority=data["priority"],
            external_id=data.get("external_id"),
            input=dict(data.get("input") or {}),
            created_at=_when(data["created_at"]),
            updated_at=_when(data["updated_at"]),
            deadline_at=_when(data["deadline_at"]),
            finished_at=_maybe_when(data.get("finished_at")),
            error=_part(JobError, data.get("error")),
            results=_parts(Result, data.get("results")),
            queue=_part(QueuePlace, data.get("queue")),
            timings=_part(Timings, data.get("timings")),
            retry_of=data.get("retry_of"),
            retried_by=tuple(data["retried_by"]) if data.get("retried_by") is not None else None,
            webhook_url=data.get("webhook_url"),
            webhook_events=data.get("webhook_events"),
            results_expired_at=_maybe_when(data.get("results_expired_at")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-ready data, in the API's shape (unknown fields included)."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        return out | dict(self.extra)


@dataclass(frozen=True)
class JobPage:
    items: tuple[Job, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobPage:
        return cls(tuple(Job.from_json(item) for item in data["items"]), data.get("next_cursor"))


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe_when(text: str | None) -> datetime | None:
    return None if text is None else _when(text)


def _part(cls: type[T], data: Mapping[str, Any] | None) -> T | None:
    return None if data is None else _parsed(cls, data)


def _parts(cls: type[T], data: list[Mapping[str, Any]] | None) -> tuple[T, ...] | None:
    return None if data is None else tuple(_parsed(cls, item) for item in data)


def _parsed(cls: type[T], data: Mapping[str, Any]) -> T:
    """A part from its JSON, ignoring fields this version does not know."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is one of our dataclasses
    return cls(**{k: v for k, v in data.items() if k in names})


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value
