"""Timings: each span sums the job's stays in its states, between the stored moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.jobs import JobStatus as S
from domain.timings import Timings, timings

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_job_that_waited_backed_off_ran_and_was_archived() -> None:
    moves = [
        (S.PENDING_AUDIT, at(0)),
        (S.QUEUED, at(2)),  # moderation: 2 s
        (S.SUBMITTING, at(5)),  # queue: 3 s
        (S.QUEUED, at(6)),  # the vendor was busy: back to the room
        (S.SUBMITTING, at(10)),  # queue: 4 s more
        (S.PROCESSING, at(11)),
        (S.ARCHIVING, at(40)),  # vendor: 1 + 1 + 29 s
        (S.SUCCEEDED, at(43)),  # archiving: 3 s
    ]

    assert timings(moves, now=at(1000)) == Timings(moderation=2, queue=7, vendor=31, archiving=3, total=43)


def test_a_running_job_counts_to_now() -> None:
    moves = [(S.QUEUED, at(0)), (S.SUBMITTING, at(4)), (S.PROCESSING, at(5))]

    assert timings(moves, now=at(65)) == Timings(moderation=0, queue=4, vendor=61, archiving=0, total=65)
