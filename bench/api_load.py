"""The API table (issue 11): real server processes on loopback, 16 keep-alive clients, fixed time.

Two servers, one process each, through the same `uvicorn.run` call as `genq api`: bare Litestar
with a sync "hello" handler (the baseline, in the same run) and genq's API on the bench's database
and Redis. Each client is a user of its own (an enterprise member with an API key), as 16 users
submitting at once; one row has all 16 clients submit as one user, whose charges take turns on
its balance. The submits go unanswered by any worker: nothing consumes the queue in this table.
The image of the model_pose12 row comes from the sample-image server, a third process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bench.load import LoadRun, Request, drive
from bench.procs import Child, Stats, child, wait_http
from bench.scenarios import member
from bench.services import flush
from infra.embedded import free_port
from infra.resources import Resources
from infra.settings import Secret, Settings

CLIENTS = 16
ROW_S = 6.0
WARMUP_S = 1.0
SUBMIT = "POST /v1/jobs video, prompt only"
VIDEO = {"kind": "video", "input": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a red coat"}}


@dataclass(frozen=True)
class ApiRow:
    label: str
    run: LoadRun
    server_cpu: float  # the server's CPU time over the run's time (1.0 = one core)
    counts: dict[str, float] | None  # database work per request (genq's server only)


@dataclass
class Server:
    proc: Child
    port: int
    stats: Stats


def measure(settings: Settings, *, profile: Any = None) -> list[ApiRow]:
    """Every row; with `profile`, a callable given the genq server's pid while the prompt-only submit
    row runs (the bench's `--profile`)."""
    flush(settings)
    with ExitStack() as stack:
        samples = stack.enter_context(_server(settings, "samples"))
        settings = settings.with_(
            fetch_allowlist=f"127.0.0.1:{samples.port}",
            runninghub_api_key=Secret("rh-bench-key-0123456789"),
            log_level=Settings().log_level,  # what a production API logs (to a file here)
        )
        bare = stack.enter_context(_server(settings, "bare"))
        genq = stack.enter_context(_server(settings, "genq"))
        for server in (samples, bare, genq):
            wait_http(server.proc, f"http://127.0.0.1:{server.port}/healthz")
        keys = _api_keys(settings, CLIENTS)
        auths = [{"Authorization": f"Bearer {key}"} for key in keys]
        reads = [Request("GET", f"/v1/jobs/{_first_job(genq.port, auth)}", auth) for auth in auths]
        image = f"http://127.0.0.1:{samples.port}/samples/garment.png"
        pose12 = {"kind": "model_pose12", "input": {"image_url": image, "scene": "street", "category": "dress"}}
        rows = [
            ("bare Litestar: GET / (sync handler)", bare, [Request("GET", "/")] * CLIENTS, False),
            ("GET /healthz", genq, [Request("GET", "/healthz")] * CLIENTS, False),
            ("GET /v1/jobs/{id}", genq, reads, False),
            (SUBMIT, genq, [_post(VIDEO, auth) for auth in auths], True),
            ("  the same, all 16 clients one user", genq, [_post(VIDEO, auths[0])] * CLIENTS, False),
            ("POST /v1/jobs model_pose12, image URL", genq, [_post(pose12, auth) for auth in auths], False),
        ]
        return [
            _row(label, server, requests, profile if profiled else None) for label, server, requests, profiled in rows
        ]


def _row(label: str, server: Server, requests: list[Request], profile: Any) -> ApiRow:
    drive(server.port, requests, seconds=WARMUP_S)
    before, cpu = server.stats.read(), server.proc.cpu_s()
    with _profiling(profile, server.proc.pid):
        run = drive(server.port, requests, seconds=ROW_S)
    server_cpu = (server.proc.cpu_s() - cpu) / run.seconds
    after = server.stats.read()
    answered = len(run.latencies) + sum(run.unexpected.values())
    counts = None
    if after["statements"] > before["statements"]:
        counts = {name: (after[name] - before[name]) / answered for name in ("statements", "transactions", "pings")}
    return ApiRow(label, run, server_cpu, counts)


@contextmanager
def _profiling(profile: Any, pid: int) -> Iterator[None]:
    if profile is None:
        yield
        return
    with profile(pid):
        yield


@contextmanager
def _server(settings: Settings, kind: str) -> Iterator[Server]:
    port = free_port()
    stats_file = settings.var_dir / f"api-{kind}.json"
    with child(f"api-{kind}", ["-m", "bench.serve", kind, str(port), str(stats_file)], settings) as proc:
        yield Server(proc, port, Stats(proc, stats_file))


def _api_keys(settings: Settings, count: int) -> list[str]:
    """One enterprise member per client (a user's submits queue on that user's balance)."""
    resources = Resources.open(settings)
    try:
        return [member(resources, "enterprise").api_key for _ in range(count)]
    finally:
        resources.close()


def _first_job(port: int, auth: dict[str, str]) -> str:
    resp = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", json=VIDEO, headers=auth, timeout=30)
    if resp.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs answered {resp.status_code}: {resp.text}")
    return str(resp.json()["id"])


def _post(body: dict[str, Any], auth: dict[str, str]) -> Request:
    headers = {**auth, "Content-Type": "application/json"}
    return Request("POST", "/v1/jobs", headers, json.dumps(body).encode(), expect=202)
