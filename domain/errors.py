"""One base for every rule the domain refuses; `code` is stable and the API maps it to a status."""

from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class IllegalTransition(DomainError):
    code = "illegal_transition"

    def __init__(self, job_id: str, current: str, target: str) -> None:
        super().__init__(f"job {job_id} cannot move from {current} to {target}", current=current, target=target)


class InsufficientCredits(DomainError):
    code = "insufficient_credits"

    def __init__(self, needed: int, balance: int) -> None:
        super().__init__(f"this job costs {needed} credits; the balance is {balance}", needed=needed, balance=balance)


class InvalidInput(DomainError):
    """An input rule failed; `field` names the offending field (dotted path from the body root)."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)
        self.field = field


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class TooLate(Conflict):
    """The job is past the point where this can be done (a cancel while its results are copied)."""

    code = "too_late"


class UnsupportedMediaType(DomainError):
    """The body is not in a format this endpoint reads (it reads JSON)."""

    code = "unsupported_media_type"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class TooManyRequests(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, **details: object) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class ChannelUnavailable(DomainError):
    """A payment channel did not give a usable answer (down, or an answer that failed verification)."""

    code = "payment_channel_unavailable"
