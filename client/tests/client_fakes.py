"""A scripted stand-in for the genq API behind httpx.MockTransport, a fake clock, and answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

JOB_ID = "01JQ5S1N2Q8W6F7G8H9J0K1M2N"
API_URL = "http://genq.test"
API_KEY = "gq_test_key_0123456789"
Answer = Callable[[httpx.Request], httpx.Response]


class FakeApi:
    """Answers per (method, path), taken in order, the last one repeating; every request is kept."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._answers: dict[tuple[str, str], list[Answer]] = {}

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self._answers[(method, path)] = list(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self._answers.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "unscripted", "details": {}}})
        return (queue.pop(0) if len(queue) > 1 else queue[0])(request)

    def to(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


class Clock:
    """Monotonic time that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now, self.slept = 1000.0, list[float]()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def job_json(status: str = "queued", **changes: Any) -> dict[str, Any]:
    """A job as `GET /v1/jobs/{id}` answers it."""
    job: dict[str, Any] = {
        "id": JOB_ID,
        "kind": "basic_clean",
        "status": status,
        "price": 1,
        "priority": "interactive",
        "external_id": None,
        "input": {"image_url": "https://example.com/shoe.png"},
        "created_at": "2025-05-01T10:00:00.123456Z",
        "updated_at": "2025-05-01T10:00:02Z",
        "deadline_at": "2025-05-01T10:02:00Z",
        "finished_at": None,
        "error": None,
        "results": None,
        "queue": None,
        "timings": {"moderation": 0.0, "queue": 0.5, "vendor": 1.0, "archiving": 0.25, "total": 1.75},
        "retry_of": None,
        "retried_by": None,
        "webhook_url": None,
        "webhook_events": None,
        "results_expired_at": None,
    }
    return job | changes


def succeeded_json(*results: tuple[str, str, int]) -> dict[str, Any]:
    files = [{"url": url, "content_type": ctype, "size": size} for url, ctype, size in results]
    return job_json(
        "succeeded", results=files or [{"url": "https://s3.test/r/0.png", "content_type": "image/png", "size": 3}]
    )


def answer(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    return lambda _: httpx.Response(status, json=body, headers=headers)


def api_error(status: int, code: str, message: str = "refused", headers: dict[str, str] | None = None) -> Answer:
    return answer(status, {"error": {"code": code, "message": message, "details": {"field": "kind"}}}, headers)


def fails(exc: Exception) -> Answer:
    def raise_(_: httpx.Request) -> httpx.Response:
        raise exc

    return raise_


def event(name: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event as Litestar writes it (CRLF line ends)."""
    lines = ([f"id: {event_id}"] if event_id is not None else []) + [f"event: {name}", f"data: {json.dumps(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stream(*chunks: bytes, drop: bool = False) -> Answer:
    """An event stream; with `drop`, the connection breaks after the chunks (a sync client only)."""

    def body() -> Iterator[bytes]:
        yield from chunks
        if drop:
            raise httpx.ReadError("connection reset by peer")

    content: Any = body() if drop else b"".join(chunks)
    return lambda _: httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=content)
