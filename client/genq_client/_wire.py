"""What the sync and async clients send alike: settings from the environment, paths, bodies."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx

from genq_client.errors import ApiError, GenqError
from genq_client.models import Job, Result

VERSION: Final = "0.1.0"
DEFAULT_API_URL: Final = "http://127.0.0.1:8000"  # what `make run` serves
USER_AGENT: Final = f"genq-client/{VERSION}"


def api_url(given: str | None) -> str:
    return (given or os.environ.get("GENQ_API_URL") or DEFAULT_API_URL).rstrip("/")


def auth_headers(given: str | None) -> dict[str, str]:
    key = given or os.environ.get("GENQ_API_KEY")
    if not key:
        raise GenqError("no API key: set GENQ_API_KEY (or pass api_key=, --api-key)")
    return {"Authorization": f"Bearer {key}"}


def job_path(job_id: str, action: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}" + (f"/{action}" if action else "")


def submission(
    kind: str,
    job_input: Mapping[str, Any],
    *,
    external_id: str | None,
    priority: str | None,
    webhook_url: str | None,
    webhook_events: str | None,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of `POST /v1/jobs`. Without a key of the caller's, one is made per call,
    so the client's own retries of this submission are charged once."""
    optional = {
        "external_id": external_id,
        "priority": priority,
        "webhook_url": webhook_url,
        "webhook_events": webhook_events,
    }
    body = {"kind": kind, "input": dict(job_input)} | {k: v for k, v in optional.items() if v is not None}
    return body, {"Idempotency-Key": idempotency_key or f"genq-client-{uuid.uuid4()}"}


def list_params(**filters: str | int | None) -> dict[str, str | int]:
    return {name: value for name, value in filters.items() if value is not None}


class StreamUnusable(Exception):
    """The events request got no stream (an error page, a proxy, a 5xx): polling may still work."""


def stream_headers(auth: Mapping[str, str], last_event_id: str | None) -> dict[str, str]:
    resume = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    return {**auth, "Accept": "text/event-stream", **resume}


def is_event_stream(response: httpx.Response) -> bool:
    media_type = response.headers.get("content-type", "").split(";", maxsplit=1)[0].strip().lower()
    return response.status_code == 200 and media_type == "text/event-stream"


def stream_failure(response: httpx.Response) -> Exception:
    """What an answer other than the stream means, its body read: a refusal for good (no such job,
    a bad key: polling would be refused too) is the ApiError; anything else, StreamUnusable."""
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        return ApiError.from_response(response)
    return StreamUnusable(f"{response.status_code} {response.headers.get('content-type', '')}")


def results_of(job: Job) -> tuple[Result, ...]:
    if not job.results:
        raise GenqError(f"job {job.id} has no results to download (status {job.status})")
    return job.results


def size_of(response: httpx.Response, default: int) -> int:
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else default
