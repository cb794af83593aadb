"""`GET /v1/jobs/{id}/events`: a job's life as a live event stream, or its whole history as JSON.

The stream (`Accept: text/event-stream`) sends one event per state move (`id` = the stored event's
id, `event` = the new status, `data` = the job as `GET /v1/jobs/{id}` answers it), `event: queue`
(no id) whenever a waiting job's place or reason changes, a keep-alive comment every 15 s, and
ends after the terminal event. `Last-Event-ID` resumes after the events a client already has.

No thread is held per stream: the stream waits on the event loop and each look at the database
borrows a worker thread briefly, at a growing interval (0.2 s up to 1 s).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.to_thread
import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api import docs
from api.auth import CurrentUser
from api.jobs import answer_for
from api.views import JobOut
from domain.errors import NotFound
from domain.jobs import TERMINAL, Job, JobStatus
from infra.paging import is_id
from infra.resources import Resources

KEEP_ALIVE_S = 15.0


class EventOut(msgspec.Struct):
    id: int
    from_status: str | None
    to_status: str
    at: datetime
    detail: dict[str, Any]


LastEventId = Annotated[str | None, HeaderParameter(name="Last-Event-ID", max_length=32, required=False)]


@get("/v1/jobs/{job_id:str}/events", tags=["jobs"], responses=docs.errors(401, 404))
async def job_events(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    user: NamedDependency[CurrentUser],
    resources: NamedDependency[Resources],
    last_event_id: LastEventId = None,
) -> Response[list[EventOut]] | ServerSentEvent:
    """`Accept: text/event-stream`: the live stream; otherwise the job's whole history as JSON."""
    job = await anyio.to_thread.run_sync(
        lambda: resources.jobs.get_for_user(user.id, job_id) if is_id(job_id) else None
    )
    if job is None:
        raise NotFound(f"no job {job_id}", job_id=job_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        history = await anyio.to_thread.run_sync(resources.jobs.history, job.id)
        return Response([EventOut(e.id, e.from_status, e.to_status, e.at, dict(e.detail)) for e in history])
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return ServerSentEvent(_stream(resources, job, after))


async def _stream(resources: Resources, job: Job, after: int) -> AsyncIterator[ServerSentEventMessage]:
    last_queue: tuple[str, int] | None = None
    quiet_since, pause = anyio.current_time(), 0.2
    while True:
        events = await anyio.to_thread.run_sync(partial(resources.jobs.history, job.id, after=after))
        if events:
            answer = await anyio.to_thread.run_sync(lambda: _now(resources, job.id))
            for event in events:
                after = event.id
                yield ServerSentEventMessage(data=_json(answer), event=event.to_status, id=event.id)
            if JobStatus(events[-1].to_status) in TERMINAL:
                return
            quiet_since, pause = anyio.current_time(), 0.2
            last_queue = _place(answer)
        else:
            answer = await anyio.to_thread.run_sync(lambda: _now(resources, job.id))
            if (place := _place(answer)) is not None and place != last_queue:
                last_queue = place
                yield ServerSentEventMessage(data=msgspec.json.encode(answer.queue).decode(), event="queue")
        if anyio.current_time() - quiet_since >= KEEP_ALIVE_S:
            quiet_since = anyio.current_time()
            yield ServerSentEventMessage(comment="keep-alive")
        await anyio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _now(resources: Resources, job_id: str) -> JobOut:
    job = resources.jobs.get(job_id)
    assert job is not None  # jobs are never deleted while streamed
    return answer_for(resources, job)


def _place(answer: JobOut) -> tuple[str, int] | None:
    return None if answer.queue is None else (answer.queue.reason, answer.queue.position)


def _json(answer: JobOut) -> str:
    return msgspec.json.encode(answer).decode()
