"""What every vendor client promises its callers: the error buckets and three poll outcomes.

Errors are split by the caller's next move (VENDORS.md §0, §10), never by the vendor's own code:

- `VendorUnavailable` — transient (network, 5xx): try again soon, spend a retry. A
  call that creates vendor work lands here only when the request surely never left us.
- `VendorOutcomeUnknown` — the request may have reached the vendor and its answer was lost (read
  timeout, connection reset after sending): the call must not be repeated as if nothing happened,
  since the vendor may already run, and bill, a task we hold no id for. Not a `VendorUnavailable`,
  so generic retry code leaves it alone. Only calls that create vendor work raise it (`submit`);
  polls, outputs and cancels are safe to repeat and keep `VendorUnavailable`.
- `VendorBusy` — capacity or rate limit (the vendor's concurrency or queue is full, a 429): wait
  (its `Retry-After` when given) and ask again; back-pressure, it never spends a retry or fails
  the job (SPEC §6).
- `VendorRejected` — permanent (bad input, auth, config, the vendor's job failed): fail + refund.
- `VendorExpired` — the vendor no longer knows the task id: fail with `vendor_job_expired`.
- `VendorProtocolError` — the answer broke the documented contract: alert, treat as permanent.

`poll()` answers with a value, not an exception: `Running() | Done(files) | Failed(code, message)`.
A transport error (no HTTP answer at all) is bucketed by `transport_error`; an HTTP answer, whatever
its status, is an answer and is bucketed by each client's own table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

import httpx


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


class VendorOutcomeUnknown(VendorError):
    """The request may have reached the vendor and its answer was lost: the call must not be repeated
    as if nothing happened. None of our generation vendors dedupes submissions or can be asked "did
    you get job X?" (VENDORS.md), so a blind retry may start, and bill, a second task."""


class VendorBusy(VendorError):
    """Capacity or a rate limit: the vendor is full right now. Wait (`retry_after_ms`, when the
    vendor said) and ask again; back-pressure, never a failure and never a spent attempt."""

    def __init__(self, vendor: str, code: str, detail: str = "", *, retry_after_ms: int | None = None) -> None:
        super().__init__(vendor, code, detail)
        self.retry_after_ms = retry_after_ms


class VendorRejected(VendorError):
    """Permanent: repeating the same call cannot succeed."""


class VendorExpired(VendorError):
    """The vendor's task id is unknown or past its lifetime."""


class VendorProtocolError(VendorRejected):
    """The vendor's answer broke its documented contract (missing field, wrong type)."""


class MessageRejected(Exception):
    """An incoming vendor message (callback, push, notification) that must not be trusted; `reason`
    is stable and each subclass lists its own. `what` names the message in the text."""

    what = "vendor message"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.what} rejected: {reason}")
        self.reason = reason


NOT_SENT: Final[tuple[type[httpx.TransportError], ...]] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
"""Transport errors raised before any byte of the request reached the vendor: no connection (refused,
DNS, TLS handshake), no free pooled connection, a scheme we cannot speak, or a proxy that would not
open the tunnel. Every other transport error (ReadTimeout, ReadError, WriteError, WriteTimeout,
RemoteProtocolError, ...) may come after the vendor read the request; so may LocalProtocolError,
which h11 also raises when a body runs past its Content-Length, after sending the declared bytes."""


def transport_error(
    vendor: str, exc: httpx.TransportError, *, creates: bool, scrub: Callable[[str], str] = str
) -> VendorError:
    """The bucket of a call that got no HTTP answer; returned, not raised.

    `creates`: the call starts vendor work (a submit). Such a call is `VendorOutcomeUnknown` unless
    the error is one of `NOT_SENT`; any other call is safe to repeat, so `VendorUnavailable`.
    `scrub` removes credentials from the detail text.
    """
    detail = scrub(f"{type(exc).__name__}: {exc}")
    if creates and not isinstance(exc, NOT_SENT):
        return VendorOutcomeUnknown(vendor, "outcome_unknown", detail)
    return VendorUnavailable(vendor, "transport", detail)


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
R = TypeVar("R")


def request_as(request: object, kind: type[R], client: object) -> R:
    """`submit`'s request as the client's own type. `submit` is typed `object` because
    `GenerationVendor.submit` is; anything but the client's request type is a bug."""
    if not isinstance(request, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        owner = type(client).__name__
        raise TypeError(f"{owner}.submit takes {article} {kind.__name__}, not {type(request).__name__}")
    return request


class PolledOutputs:
    """`outputs()` for a client whose `poll()` names a finished task's files (URLs asked afresh)."""

    name: str

    def poll(self, task_id: str) -> PollOutcome:
        raise NotImplementedError

    def outputs(self, task_id: str) -> tuple[VendorFile, ...]:
        """The finished task's files with fresh URLs; failed -> its code, unfinished -> `not_finished`."""
        outcome = self.poll(task_id)
        if isinstance(outcome, Done):
            return outcome.files
        if isinstance(outcome, Failed):
            raise VendorRejected(self.name, outcome.code, outcome.message)
        raise VendorRejected(self.name, "not_finished", outcome.stage)


class GenerationVendor(Protocol):
    """The surface the generation, polling and archiving workers use, whatever the vendor.

    `can_cancel`: after `cancel(task_id)` returns, the vendor runs (and bills) nothing more for that
    task. False means `cancel` is a documented no-op: the task runs to its end and holds its slot.
    """

    name: str
    can_cancel: bool

    def submit(self, request: object, *, idempotency_key: str) -> str:
        """Start the vendor's task; return its task id. A lost answer is `VendorOutcomeUnknown`."""
        ...

    def poll(self, task_id: str) -> PollOutcome: ...

    def outputs(self, task_id: str) -> tuple[VendorFile, ...]:
        """The finished task's files, asked for afresh (their URLs are short-lived)."""
        ...

    def cancel(self, task_id: str) -> None: ...
