"""`AsyncClient`: the genq API over httpx, awaited; the same methods and behaviour as `Client` (_sync.py)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from genq_client._watch import POLL_PAUSE_S, STREAM_READ_S, STREAM_STALLS, OnUpdate, Watch, prefer_wait
from genq_client._wire import (
    USER_AGENT,
    StreamUnusable,
    api_url,
    auth_headers,
    is_event_stream,
    job_path,
    list_params,
    results_of,
    size_of,
    stream_failure,
    stream_headers,
    submission,
)
from genq_client.errors import ApiConnectionError, ApiError
from genq_client.files import PartFile, Progress, result_name
from genq_client.models import Job, JobPage, Result
from genq_client.retry import RetryPolicy, retry_after
from genq_client.sse import SseDecoder


class AsyncClient:
    """The genq API for one API key, awaited: see `Client`. `on_update` callbacks are plain functions."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = api_url(base_url)
        self._auth = auth_headers(api_key)
        self._timeout, self._policy = timeout, RetryPolicy(max_retries=max_retries)
        self._sleep, self._clock = sleep, clock
        headers = {"User-Agent": USER_AGENT}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=headers, follow_redirects=True
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        kind: str,
        input: Mapping[str, Any],
        *,
        external_id: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_events: str | None = None,
    ) -> Job:
        """Submit a job (charged now, refunded if it fails); 402 `insufficient_credits` when short."""
        body, headers = submission(
            kind,
            input,
            external_id=external_id,
            priority=priority,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            idempotency_key=idempotency_key,
        )
        return Job.from_json((await self._api("POST", "/v1/jobs", json=body, headers=headers)).json())

    async def get(self, job_id: str) -> Job:
        return Job.from_json((await self._api("GET", job_path(job_id))).json())

    async def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        external_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """Your jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
        params = list_params(status=status, kind=kind, external_id=external_id, limit=limit, cursor=cursor)
        return JobPage.from_json((await self._api("GET", "/v1/jobs", params=params)).json())

    async def cancel(self, job_id: str) -> Job:
        return Job.from_json((await self._api("POST", job_path(job_id, "cancel"), replayable=False)).json())

    async def retry(self, job_id: str) -> Job:
        """A failed, timed-out or cancelled job again, as a new job charged again."""
        return Job.from_json((await self._api("POST", job_path(job_id, "retry"), replayable=False)).json())

    async def wait(self, job_id: str, *, timeout: float = 600.0, on_update: OnUpdate | None = None) -> Job:
        """The job once it has ended (any terminal status: check `job.succeeded`); WaitTimeout after
        `timeout` seconds. Follows the job's event stream, resuming it where it broke off; after
        STREAM_STALLS streams in a row that bring nothing, polls instead. `on_update(job)` is called
        on every change of status or queue place."""
        watch = Watch(job_id, self._clock() + timeout, on_update)
        stalls = 0
        while stalls < STREAM_STALLS:
            seen = watch.events
            with contextlib.suppress(httpx.TransportError, StreamUnusable):  # resumed below, or polled
                await self._follow(watch)
            if watch.done:
                return watch.finished()
            watch.check_time(self._clock())
            stalls = 0 if watch.events > seen else stalls + 1
            if 0 < stalls < STREAM_STALLS:
                await self._sleep(self._policy.backoff(stalls - 1))
        return await self._poll(watch)

    async def submit_and_wait(
        self,
        kind: str,
        input: Mapping[str, Any],
        *,
        external_id: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_events: str | None = None,
        timeout: float = 600.0,
        on_update: OnUpdate | None = None,
    ) -> Job:
        job = await self.submit(
            kind,
            input,
            external_id=external_id,
            priority=priority,
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
        )
        return await self.wait(job.id, timeout=timeout, on_update=on_update)

    async def download(
        self, job: Job | str, folder: str | os.PathLike[str], *, progress: bool = True
    ) -> builtins.list[Path]:
        """Save every result of a succeeded job to `folder` as `{job_id}-{i}.{ext}`; the paths, in
        order. With `progress`, a progress line per file on stderr."""
        done = await self.get(job) if isinstance(job, str) else job
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        return [
            await self._save(result, target / result_name(done.id, index, result.content_type), progress)
            for index, result in enumerate(results_of(done))
        ]

    async def _save(self, result: Result, path: Path, progress: bool) -> Path:
        request = self._http.build_request("GET", result.url)  # a signed URL: no API key goes with it
        response = await self._send(request, replayable=True, stream=True)
        meter = Progress(path.name, size_of(response, result.size), sys.stderr if progress else None)
        try:
            with PartFile(path, meter) as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"the download of {path.name} broke off: {exc!r}") from exc
        finally:
            await response.aclose()
        return path

    async def _follow(self, watch: Watch) -> None:
        """One connection to the job's event stream, until it ends or the job does."""
        read_s = max(0.1, min(watch.left(self._clock()), STREAM_READ_S))
        headers = stream_headers(self._auth, watch.last_event_id)
        path = job_path(watch.job_id, "events")
        timeout = httpx.Timeout(self._timeout, read=read_s)
        async with self._http.stream("GET", path, headers=headers, timeout=timeout) as answer:
            if not is_event_stream(answer):
                await answer.aread()
                raise stream_failure(answer)
            decoder = SseDecoder()
            async for line in answer.aiter_lines():
                if (event := decoder.feed(line)) is not None:
                    watch.take(event)
                    if watch.done or watch.left(self._clock()) <= 0:
                        return

    async def _poll(self, watch: Watch) -> Job:
        while True:
            watch.check_time(self._clock())
            wait_s = prefer_wait(watch.left(self._clock()))
            headers, timeout = {"Prefer": f"wait={wait_s}"}, self._timeout + wait_s
            answer = await self._api("GET", job_path(watch.job_id), headers=headers, timeout=timeout)
            watch.see(Job.from_json(answer.json()))
            if watch.done:
                return watch.finished()
            if "preference-applied" not in answer.headers:
                await self._sleep(POLL_PAUSE_S)

    async def _api(self, method: str, path: str, *, replayable: bool = True, **options: Any) -> httpx.Response:
        headers = {**self._auth, **options.pop("headers", {})}
        request = self._http.build_request(method, path, headers=headers, **options)
        return await self._send(request, replayable=replayable)

    async def _send(self, request: httpx.Request, *, replayable: bool, stream: bool = False) -> httpx.Response:
        """The answer, once it is not an error: retried per the policy, else ApiError / ApiConnectionError."""
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._policy.after_error(exc, attempt, replayable=replayable)
                if delay is None:
                    raise ApiConnectionError(f"{request.method} {request.url}: {exc!r}") from exc
            else:
                if not response.is_error:
                    return response
                await response.aread()
                await response.aclose()
                now = datetime.now(UTC)
                delay = self._policy.after_status(response, attempt, replayable=replayable, now=now)
                if delay is None:
                    raise ApiError.from_response(response, retry_after(response.headers.get("retry-after"), now=now))
            await self._sleep(delay)
            attempt += 1
