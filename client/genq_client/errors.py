"""The client's exceptions: one base, `GenqError`; each says what the caller can do next."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from genq_client.models import Job


class GenqError(Exception):
    """Anything the client cannot do: a refused request, no connection, a wait that ran out."""


class ApiError(GenqError):
    """The API answered with an error: `{"error": {"code", "message", "details"}}` and its status.

    `retry_after` is the server's `Retry-After` in seconds, when it gave one (429).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.details: Mapping[str, Any] = details or {}
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response, retry_after: float | None = None) -> ApiError:
        """The API's one error shape; anything else (a proxy's HTML page) as `http_<status>`."""
        try:
            error = response.json()["error"]
            code, message, details = str(error["code"]), str(error["message"]), error.get("details") or {}
        except (ValueError, KeyError, TypeError):
            code, message, details = f"http_{response.status_code}", response.text[:300], {}
        return cls(response.status_code, code, message, details, retry_after)


class ApiConnectionError(GenqError):
    """No answer from the API after the client's retries (refused, reset, timed out)."""


class WaitTimeout(GenqError):
    """The job had not ended when the wait ran out; `job` is its last known state (None: never seen)."""

    def __init__(self, job_id: str, job: Job | None) -> None:
        status = job.status if job is not None else "unknown"
        super().__init__(f"job {job_id} has not ended yet (status {status})")
        self.job_id, self.job = job_id, job


class WebhookVerificationError(GenqError):
    """A webhook whose headers, timestamp or signature do not check out: answer it 4xx, act on nothing."""
