"""`wait` follows the job's event stream, resumes it where it broke off, and polls when the stream
keeps failing; `on_update` hears every change of status or queue place once."""

from __future__ import annotations

import asyncio

import pytest
from client_fakes import JOB_ID, Clock, FakeApi, answer, api_error, event, job_json, stream, succeeded_json
from genq_client import ApiError, AsyncClient, Client, Job, WaitTimeout

JOB = f"/v1/jobs/{JOB_ID}"
EVENTS = f"{JOB}/events"
QUEUED = job_json("queued", queue={"reason": "vendor_slots", "position": 2})


def seen(updates: list[Job]) -> list[tuple[str, int | None]]:
    return [(job.status, job.queue.position if job.queue else None) for job in updates]


def test_the_stream_is_followed_to_the_terminal_event(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on(
        "GET",
        EVENTS,
        stream(
            b": keep-alive\r\n\r\n",
            event("queued", QUEUED, 1),
            event("queue", {"reason": "vendor_slots", "position": 1}),
            event("processing", job_json("processing"), 2),
            event("succeeded", succeeded_json(), 3),
        ),
    )
    updates: list[Job] = []

    job = client.wait(JOB_ID, on_update=updates.append)

    assert job.status == "succeeded" and job.results is not None
    assert seen(updates) == [("queued", 2), ("queued", 1), ("processing", None), ("succeeded", None)]
    assert api.requests[0].headers["Accept"] == "text/event-stream"
    assert "Last-Event-ID" not in api.requests[0].headers
    assert len(api.requests) == 1 and clock.slept == []


def test_a_stream_that_ends_early_is_resumed_after_the_last_event(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on(
        "GET",
        EVENTS,
        stream(event("queued", QUEUED, 1), event("processing", job_json("processing"), 2)),
        stream(event("succeeded", succeeded_json(), 3)),
    )

    job = client.wait(JOB_ID)

    assert job.status == "succeeded"
    assert [r.headers.get("Last-Event-ID") for r in api.to("GET", EVENTS)] == [None, "2"]
    assert clock.slept == []  # it made progress: reconnected at once


def test_an_event_cut_off_by_a_dropped_connection_is_asked_for_again(client: Client, api: FakeApi) -> None:
    partial = b'id: 2\r\nevent: processing\r\ndata: {"id": '
    api.on(
        "GET",
        EVENTS,
        stream(event("queued", QUEUED, 1), partial, drop=True),
        stream(event("processing", job_json("processing"), 2), event("succeeded", succeeded_json(), 3)),
    )
    updates: list[Job] = []

    job = client.wait(JOB_ID, on_update=updates.append)

    assert job.status == "succeeded"
    assert [r.headers.get("Last-Event-ID") for r in api.to("GET", EVENTS)] == [None, "1"]
    assert seen(updates) == [("queued", 2), ("processing", None), ("succeeded", None)]


def test_a_failing_stream_falls_back_to_long_polling(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("GET", EVENTS, api_error(503, "unavailable"))
    applied = {"Preference-Applied": "wait=10"}
    api.on(
        "GET", JOB, answer(200, QUEUED, applied), answer(200, job_json("failed", error={"code": "x", "message": "y"}))
    )
    updates: list[Job] = []

    job = client.wait(JOB_ID, on_update=updates.append)

    assert job.status == "failed"
    assert len(api.to("GET", EVENTS)) == 3
    assert [r.headers["Prefer"] for r in api.to("GET", JOB)] == ["wait=10", "wait=10"]
    assert clock.slept == [0.5, 1.0]  # between the failed streams; none between honoured long polls
    assert seen(updates) == [("queued", 2), ("failed", None)]


def test_an_answer_that_is_not_a_stream_counts_as_a_failed_stream(client: Client, api: FakeApi) -> None:
    api.on("GET", EVENTS, answer(200, [{"id": 1, "to_status": "queued"}]))  # the history, as JSON
    api.on("GET", JOB, answer(200, succeeded_json()))

    assert client.wait(JOB_ID).status == "succeeded"


def test_polling_a_server_that_ignores_prefer_wait_pauses_between_polls(
    client: Client, api: FakeApi, clock: Clock
) -> None:
    api.on("GET", EVENTS, api_error(502, "bad_gateway"))
    api.on("GET", JOB, answer(200, QUEUED), answer(200, QUEUED), answer(200, succeeded_json()))

    client.wait(JOB_ID)

    assert clock.slept == [0.5, 1.0, 2.0, 2.0]


def test_the_wait_runs_out_with_the_last_known_state(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("GET", EVENTS, api_error(503, "unavailable"))
    api.on("GET", JOB, answer(200, QUEUED))

    with pytest.raises(WaitTimeout) as raised:
        client.wait(JOB_ID, timeout=6)

    assert raised.value.job is not None and raised.value.job.status == "queued"
    assert clock.now >= 1006


def test_a_job_that_is_not_yours_is_refused_at_once(client: Client, api: FakeApi) -> None:
    api.on("GET", EVENTS, api_error(404, "not_found", "no job"))

    with pytest.raises(ApiError) as raised:
        client.wait(JOB_ID)

    assert raised.value.code == "not_found"
    assert len(api.requests) == 1


def test_submit_and_wait_submits_then_follows_the_new_job(client: Client, api: FakeApi) -> None:
    api.on("POST", "/v1/jobs", answer(202, QUEUED))
    api.on("GET", EVENTS, stream(event("queued", QUEUED, 1), event("succeeded", succeeded_json(), 2)))

    job = client.submit_and_wait("basic_clean", {"image_url": "https://example.com/shoe.png"}, priority="batch")

    assert job.succeeded
    assert api.requests[0].read() == (
        b'{"kind":"basic_clean","input":{"image_url":"https://example.com/shoe.png"},"priority":"batch"}'
    )


def test_the_async_client_resumes_the_stream_too(async_client: AsyncClient, api: FakeApi) -> None:
    api.on(
        "GET",
        EVENTS,
        stream(event("queued", QUEUED, 1), event("queue", {"reason": "plan_concurrency", "position": 1})),
        stream(event("succeeded", succeeded_json(), 3)),
    )
    updates: list[Job] = []

    async def follow() -> Job:
        async with async_client as genq:
            return await genq.wait(JOB_ID, on_update=updates.append)

    job = asyncio.run(follow())

    assert job.succeeded
    assert [r.headers.get("Last-Event-ID") for r in api.to("GET", EVENTS)] == [None, "1"]
    assert seen(updates) == [("queued", 2), ("queued", 1), ("succeeded", None)]


def test_the_async_client_polls_when_the_stream_fails(async_client: AsyncClient, api: FakeApi, clock: Clock) -> None:
    api.on("GET", EVENTS, api_error(503, "unavailable"))
    api.on("GET", JOB, answer(200, QUEUED, {"Preference-Applied": "wait=10"}), answer(200, succeeded_json()))

    async def follow() -> Job:
        async with async_client as genq:
            return await genq.wait(JOB_ID)

    assert asyncio.run(follow()).succeeded
    assert clock.slept == [0.5, 1.0]
