"""`GET /v1/jobs/{id}/events`: every move in order, then the stream ends; `Last-Event-ID` resumes;
hundreds of open streams cost no thread each; the JSON history."""

from __future__ import annotations

import asyncio
import threading

import dramatiq
import httpx
from litestar import Litestar
from litestar.testing import TestClient

from api.app import create_app
from infra.embedded import free_port
from infra.resources import Resources
from infra.serving import ServerThread
from tests.support import auth, make_user, pose12_body, terminal_job, wait_for

Client = TestClient[Litestar]
SSE = {"Accept": "text/event-stream"}


def read_events(api: Client, path: str, headers: dict[str, str]) -> list[dict[str, str]]:
    """Every event of the stream until the server ends it (comments dropped)."""
    events, current = [], {}
    with api.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = value
    return events


def test_a_stream_sends_every_move_in_order_then_ends_and_resumes_after_the_last_seen(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=1)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]

    events = [e for e in read_events(api, f"/v1/jobs/{job_id}/events", {**auth(user), **SSE}) if "id" in e]
    stored = resources.jobs.history(job_id)
    resumed = read_events(api, f"/v1/jobs/{job_id}/events", {**auth(user), **SSE, "Last-Event-ID": events[1]["id"]})

    assert [(int(e["id"]), e["event"]) for e in events] == [(s.id, s.to_status) for s in stored]
    assert [e["event"] for e in events] == ["queued", "submitting", "processing", "archiving", "succeeded"]
    assert '"status":"succeeded"' in events[-1]["data"]
    assert [e["event"] for e in resumed if "id" in e] == ["processing", "archiving", "succeeded"]


def test_the_history_as_json(api: Client, resources: Resources, worker: dramatiq.Worker) -> None:
    user = make_user(resources, credits=1)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    terminal_job(resources, job_id)

    history = api.get(f"/v1/jobs/{job_id}/events", headers=auth(user)).json()

    assert [(e["from_status"], e["to_status"]) for e in history] == resources.jobs.events(job_id)


def test_two_hundred_open_streams_hold_no_thread_each_and_the_api_still_answers(
    resources: Resources, broker: dramatiq.Broker
) -> None:
    resources.rooms.pause("runninghub:pose12", ms=600_000)  # nothing runs: every stream stays open
    user = make_user(resources, credits=1)
    server = ServerThread(create_app(resources), host="127.0.0.1", port=free_port()).start()
    job_id = httpx.post(f"{server.url}/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    before = threading.active_count()

    async def open_streams(n: int) -> tuple[int, int]:
        opened, hold = asyncio.Event(), asyncio.Event()
        first_events = 0

        async def one(client: httpx.AsyncClient) -> None:
            nonlocal first_events
            async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**auth(user), **SSE}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("event: queued"):
                        first_events += 1
                        if first_events == n:
                            opened.set()
                        await hold.wait()  # keep the stream open until the test is done

        limits = httpx.Limits(max_connections=n + 10)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            tasks = [asyncio.create_task(one(client)) for _ in range(n)]
            await asyncio.wait_for(opened.wait(), 60)
            during = threading.active_count()
            health = (await client.get("/healthz")).status_code
            for task in tasks:
                task.cancel()
            return during, health

    try:
        during, health = asyncio.run(open_streams(200))
    finally:
        server.stop()

    assert health == 200
    assert during - before < 60, (before, during)  # a bounded pool of borrowed threads, not 200


def test_a_waiting_job_streams_its_place_in_the_queue_as_it_changes(
    resources: Resources, worker: dramatiq.Worker
) -> None:
    resources.rooms.pause("runninghub:pose12", ms=600_000)
    user = make_user(resources, credits=2)
    server = ServerThread(create_app(resources), host="127.0.0.1", port=free_port()).start()
    batch = {**pose12_body(), "priority": "batch"}
    job_id = httpx.post(f"{server.url}/v1/jobs", json=batch, headers=auth(user)).json()["id"]
    wait_for(lambda: resources.rooms.snapshot("runninghub:pose12").waiting, what="the job to wait")

    seen: list[str] = []
    try:
        url = f"{server.url}/v1/jobs/{job_id}/events"
        with httpx.stream("GET", url, headers={**auth(user), **SSE}, timeout=30) as resp:
            for line in resp.iter_lines():
                seen.append(line)
                if line == "event: queued":  # its first event; now an interactive job goes ahead of it
                    httpx.post(f"{server.url}/v1/jobs", json=pose12_body(), headers=auth(user))
                if line.startswith("data: ") and seen[-2:-1] == ["event: queue"]:
                    break
    finally:
        server.stop()

    first = next(line for line in seen if line.startswith("data: "))
    assert '"queue":{"reason":"vendor_busy","position":1}' in first
    assert seen[-2:] == ["event: queue", 'data: {"reason":"vendor_busy","position":2}']
