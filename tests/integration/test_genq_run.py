"""End to end: `genq run` (what `make run` starts) driven over HTTP, then stopped with Ctrl-C.

Always on the embedded defaults (SQLite, embedded Redis and S3, simulators); also against the
configured PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from infra.embedded import free_port
from infra.settings import Settings

SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "RUNNINGHUB_BASE_URL", "RUNNINGHUB_API_KEY")
MODES = ["embedded"] + (["external"] if Settings.from_env().database_url and Settings.from_env().redis_url else [])


@dataclass
class Stack:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    lines: dict[str, str]
    var_dir: Path

    @property
    def api(self) -> str:
        return self.lines["api"]

    def genq(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "genq.cli", *args],
            check=False,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if request.param == "external" or k not in SERVICE_VARS}
    var_dir = tmp_path / "var"
    env |= {
        "VAR_DIR": str(var_dir),
        "API_PORT": str(free_port()),
        "SIM_RUNNINGHUB_PORT": str(free_port()),
        "EMBEDDED_REDIS_PORT": str(free_port()),
        "EMBEDDED_S3_PORT": str(free_port()),
        "POLL_SCHEDULE_IMAGE": "0:0.3",
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(  # the whole stack, as `make run` starts it
        [sys.executable, "-m", "genq.cli", "run"], env=env, stdout=subprocess.PIPE, text=True, process_group=0
    )
    lines = _read_banner(proc)
    yield Stack(proc, env, lines, var_dir)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _read_banner(proc: subprocess.Popen[str], timeout_s: float = 120) -> dict[str, str]:
    lines: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while "ready" not in lines:
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            raise AssertionError(f"genq run did not come up; saw {lines}")
        name, sep, value = line.partition(": ")
        if sep:
            lines[name.strip()] = value.strip()
    return lines


def _ours_alive(var_dir: Path) -> list[int]:
    """Processes whose command line or environment names this run's var dir."""
    alive = []
    marker = str(var_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in blob:
            alive.append(int(entry.name))
    return alive


def test_make_run_serves_a_job_end_to_end_and_stops_cleanly(stack: Stack) -> None:
    assert set(stack.lines) >= {"api", "docs", "sim", "metrics"}
    httpx.post(f"{stack.lines['sim']}/__sim/config", json={"queued_s": 0.2, "running_s": 0.5}).raise_for_status()
    user = json.loads(stack.genq("users", "create", "--phone", f"139{uuid.uuid4().int % 10**8:08d}", "--credits", "2"))
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    body = {
        "kind": "model_pose12",
        "input": {"image_url": "https://example.com/g.png", "scene": "studio", "category": "coat"},
    }

    job = httpx.post(f"{stack.api}/v1/jobs", json=body, headers=headers).json()
    deadline = time.monotonic() + 60
    while job["status"] not in ("succeeded", "failed", "timed_out") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = httpx.get(f"{stack.api}/v1/jobs/{job['id']}", headers=headers).json()

    assert job["status"] == "succeeded", job
    assert len(job["results"]) == 12
    for result in job["results"]:
        Image.open(io.BytesIO(httpx.get(result["url"]).raise_for_status().content)).verify()
    assert httpx.get(stack.lines["docs"] + "/openapi.json").status_code == 200
    metrics = httpx.get(stack.lines["metrics"]).text
    assert 'genq_jobs_finished_total{kind="model_pose12",status="succeeded"} 1.0' in metrics
    assert 'genq_jobs_submitted_total{kind="model_pose12"} 1.0' in metrics

    stack.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert stack.proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert _ours_alive(stack.var_dir) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stack.api}/healthz", timeout=2)
