"""The simulator served on loopback by uvicorn via `asgi_app`; the unchanged client talks to it."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from PIL import Image

from tests.support import wait_for
from vendors.base import Done, Running, VendorUnavailable
from vendors.runninghub import RunningHubClient
from vendors.sim.common import asgi_app
from vendors.sim.runninghub import RunningHubSim


@pytest.fixture
def loopback(sim: RunningHubSim) -> Iterator[str]:
    """`sim` behind uvicorn on a free 127.0.0.1 port, in a thread; stopped at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def loopback_http(loopback: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=loopback, timeout=10) as http:
        yield http


def test_client_submits_polls_and_downloads_over_loopback(sim, clock, api_key, loopback, loopback_http, app_run):
    client = RunningHubClient(loopback_http, api_key=api_key)

    task_id = client.submit(app_run, idempotency_key="job-1")
    first = client.poll(task_id)
    clock.advance(sim.knobs.queued_s + sim.knobs.running_s)
    outcome = client.poll(task_id)

    assert first == Running(stage="queued")
    assert isinstance(outcome, Done) and len(outcome.files) == 12
    assert outcome.files[0].url.startswith(f"{loopback}/__sim/files/{task_id}/0.png?Expires=")
    image = loopback_http.get(outcome.files[0].url)
    Image.open(io.BytesIO(image.content)).verify()
    part = loopback_http.get(outcome.files[0].url, headers={"Range": "bytes=1-3"})
    assert (part.status_code, part.content) == (206, b"PNG")


def test_injected_transport_failure_is_a_502_over_loopback(sim, api_key, loopback_http, app_run) -> None:
    sim.configure(failure_rate=1.0, failure_kind="transport")
    client = RunningHubClient(loopback_http, api_key=api_key)

    with pytest.raises(VendorUnavailable) as info:
        client.submit(app_run, idempotency_key="job-1")

    assert info.value.code == "http_502"


def test_lost_answer_is_a_502_over_loopback_and_the_task_exists(sim, api_key, loopback_http, app_run) -> None:
    """ASGI cannot drop the connection, so over loopback a lost answer is an HTTP 502 (an answer)."""
    sim.configure(lost_answer_rate=1.0)
    client = RunningHubClient(loopback_http, api_key=api_key)

    with pytest.raises(VendorUnavailable) as info:
        client.submit(app_run, idempotency_key="job-1")

    assert info.value.code == "http_502"
    assert len(sim.created_tasks()) == 1
