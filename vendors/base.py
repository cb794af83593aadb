"""What every vendor client promises its callers: four error buckets and three poll outcomes.

Errors are split by the caller's next move (VENDORS.md §0, §10), never by the vendor's own code:

- `VendorUnavailable` — transient (network, 5xx, rate limit): try again soon, spend a retry.
- `VendorBusy` — capacity (the vendor's concurrency or queue is full): put the job back with a
  delay; this is back-pressure, it never spends a retry or fails the job.
- `VendorRejected` — permanent (bad input, auth, config, the vendor's job failed): fail + refund.
- `VendorExpired` — the vendor no longer knows the task id: fail with `vendor_job_expired`.
- `VendorProtocolError` — the answer broke the documented contract: alert, treat as permanent.

`poll()` answers with a value, not an exception: `Running() | Done(files) | Failed(code, message)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class VendorError(Exception):
    """Base of every vendor failure; `code` is stable and safe to store and show."""

    def __init__(self, vendor: str, code: str, detail: str = "") -> None:
        super().__init__(f"{vendor}: {code}{': ' + detail if detail else ''}")
        self.vendor = vendor
        self.code = code
        self.detail = detail


class VendorUnavailable(VendorError):
    """Transient: retry with back-off. `retry_after_ms` is the vendor's hint, when it gave one."""

    def __init__(self, vendor: str, code: str, detail: str = "", *, retry_after_ms: int | None = None) -> None:
        super().__init__(vendor, code, detail)
        self.retry_after_ms = retry_after_ms


class VendorBusy(VendorError):
    """Capacity: the vendor is full right now. Re-queue with a delay; not a failure."""


class VendorRejected(VendorError):
    """Permanent: repeating the same call cannot succeed."""


class VendorExpired(VendorError):
    """The vendor's task id is unknown or past its lifetime."""


class VendorProtocolError(VendorRejected):
    """The vendor's answer broke its documented contract (missing field, wrong type)."""


@dataclass(frozen=True)
class VendorFile:
    """One output as the vendor offers it: a temporary URL, never stored as a result."""

    url: str
    content_type: str
    ext: str


@dataclass(frozen=True)
class Running:
    stage: str = "running"


@dataclass(frozen=True)
class Done:
    files: tuple[VendorFile, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Failed:
    code: str
    message: str = ""


PollOutcome = Running | Done | Failed


class GenerationVendor(Protocol):
    """The surface the generation, polling and archiving workers use, whatever the vendor."""

    name: str

    def submit(self, request: object, *, idempotency_key: str) -> str:
        """Start the vendor's task; return its task id."""
        ...

    def poll(self, task_id: str) -> PollOutcome: ...

    def outputs(self, task_id: str) -> tuple[VendorFile, ...]:
        """The finished task's files, asked for afresh (their URLs are short-lived)."""
        ...

    def cancel(self, task_id: str) -> None: ...
