"""One wait for a job, whichever way its news arrives (the event stream or polling): the latest
state, where to resume the stream, and the `on_update` calls, one per change of status or place."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from genq_client.errors import WaitTimeout
from genq_client.models import Job, QueuePlace
from genq_client.sse import SseEvent

STREAM_STALLS: Final = 3  # streams in a row that brought nothing new before falling back to polling
STREAM_READ_S: Final = 45.0  # the API sends a keep-alive every 15 s: a silent stream this long is dead
POLL_WAIT_S: Final = 10  # `Prefer: wait=N` while polling: short enough for the live status to move
POLL_PAUSE_S: Final = 2.0  # between polls, when the server did not honour `Prefer: wait`

OnUpdate = Callable[[Job], None]


@dataclass
class Watch:
    job_id: str
    deadline: float  # on the client's clock
    on_update: OnUpdate | None = None
    job: Job | None = None
    last_event_id: str | None = None
    events: int = 0
    _shown: tuple[str, QueuePlace | None] | None = None

    @property
    def done(self) -> bool:
        return self.job is not None and self.job.terminal

    def finished(self) -> Job:
        assert self.job is not None and self.done
        return self.job

    def left(self, now: float) -> float:
        return self.deadline - now

    def check_time(self, now: float) -> None:
        if self.left(now) <= 0:
            raise WaitTimeout(self.job_id, self.job)

    def take(self, event: SseEvent) -> None:
        """An event of the stream: a state move (`data` = the job) or `queue` (`data` = the place)."""
        data = _json(event.data)
        if event.event == "queue" and isinstance(data, dict) and {"reason", "position"} <= data.keys():
            if self.job is not None:
                self.see(replace(self.job, queue=QueuePlace(str(data["reason"]), int(data["position"]))))
        elif isinstance(data, dict) and "status" in data and "id" in data:
            self.see(Job.from_json(data))
        if event.id is not None:
            self.last_event_id = event.id
        self.events += 1

    def see(self, job: Job) -> None:
        self.job = job
        shown = (job.status, job.queue)
        if shown != self._shown and self.on_update is not None:
            self.on_update(job)
        self._shown = shown


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None  # not ours to understand: a later API's event


def prefer_wait(left_s: float) -> int:
    """`Prefer: wait=N` for a poll: whole seconds, at least 1, at most POLL_WAIT_S."""
    return max(1, min(int(left_s), POLL_WAIT_S))
