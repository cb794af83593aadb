"""End to end: `genq run` (what `make run` starts) driven over HTTP, then stopped with Ctrl-C.

Always on the embedded defaults (SQLite, embedded Redis and S3, simulators); also against the
configured PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from infra.embedded import free_port
from infra.settings import Settings
from tests.support import wait_for

SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL")
VENDOR_PREFIXES = (
    "SMS_",
    "WECHATPAY_",
    "ALIPAY_",
    "JWT_",
    "PUBLIC_BASE_URL",
    "RUNNINGHUB_",
    "KIE_",
    "TENCENT_",
    "HUNYUAN3D_",
    "CI_",
    "FETCH_ALLOWLIST",
    "WECHAT_",
    "DOUYIN_",
    "AUDIT_",
)
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

    def pace_vendors(self, *, running_s: float) -> None:
        """The generating simulators' tasks wait a moment, then run `running_s`, instead of the vendors' real times."""
        knobs = {
            "sim-runninghub": {"queued_s": 0.2, "running_s": running_s},
            "sim-hunyuan3d": {"queued_s": 0.2, "running_s": running_s},
            "sim-kie": {"waiting_s": 0.1, "queuing_s": 0.1, "generating_s": running_s},
        }
        for sim, config in knobs.items():
            httpx.post(f"{self.lines[sim]}/__sim/config", json=config).raise_for_status()


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    yield from _run_stack(tmp_path, external=request.param == "external")


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _run_stack(tmp_path, external=False)


@pytest.fixture
def audited_stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _run_stack(tmp_path, external=False, AUDIT_ENABLED="true")


def _run_stack(tmp_path: Path, *, external: bool, **extra: str) -> Iterator[Stack]:
    env = _stack_env(tmp_path, external=external, **extra)
    yield from _start_stack(env)


def _stack_env(tmp_path: Path, *, external: bool, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if (external or k not in SERVICE_VARS) and not k.startswith(VENDOR_PREFIXES)
    }
    var_dir = tmp_path / "var"
    env |= {
        "VAR_DIR": str(var_dir),
        "API_PORT": str(free_port()),
        **{
            f"SIM_{name}_PORT": str(free_port())
            for name in (
                "RUNNINGHUB",
                "HUNYUAN3D",
                "KIE",
                "CI",
                "SAMPLES",
                "WECHAT",
                "DOUYIN",
                "SMS",
                "WECHATPAY",
                "ALIPAY",
            )
        },
        "EMBEDDED_REDIS_PORT": str(free_port()),
        "EMBEDDED_S3_PORT": str(free_port()),
        "POLL_SCHEDULE_IMAGE": "0:0.3",
        "SIM_AUTO_PAY_S": "0.5",
        "SIM_MEDIA_SCALE": "0.1",  # real files, small: the full sizes have tests of their own
        "LOG_FORMAT": "json",
        **extra,
    }
    return env


def _start_stack(env: dict[str, str]) -> Iterator[Stack]:
    proc = subprocess.Popen(  # the whole stack, as `make run` starts it
        [sys.executable, "-m", "genq.cli", "run"], env=env, stdout=subprocess.PIPE, text=True, process_group=0
    )
    lines = _read_banner(proc)
    yield Stack(proc, env, lines, Path(env["VAR_DIR"]))
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
    """Processes whose command line, environment or working directory names this run's var dir."""
    alive = []
    marker = str(var_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            blob += os.readlink(entry / "cwd").encode()  # redis-server overwrites its cmdline and environ
        except OSError:
            continue
        if marker in blob:
            alive.append(int(entry.name))
    return alive


def test_make_run_serves_every_kind_end_to_end_and_stops_cleanly(stack: Stack) -> None:
    assert set(stack.lines) >= {"api", "docs", "metrics", "sim-runninghub", "sim-kie", "sample image"}
    stack.pace_vendors(running_s=0.5)
    user = json.loads(stack.genq("users", "create", "--phone", f"139{uuid.uuid4().int % 10**8:08d}", "--credits", "30"))
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    garment = stack.lines["sample image"]
    bodies = {
        "model_pose12": {"image_url": garment, "scene": "studio", "category": "coat"},
        "basic_clean": {"image_url": garment},
        "video": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a red coat in the wind"},
        "model_3d": {"version": "3.1", "prompt": "a wooden chair"},
    }

    jobs = {
        kind: httpx.post(f"{stack.api}/v1/jobs", json={"kind": kind, "input": body}, headers=headers).json()
        for kind, body in bodies.items()
    }
    finished = {kind: _wait(stack, headers, job["id"]) for kind, job in jobs.items()}

    assert {kind: job["status"] for kind, job in finished.items()} == dict.fromkeys(bodies, "succeeded"), finished
    assert {kind: len(job["results"]) for kind, job in finished.items()} == {
        "model_pose12": 12,
        "basic_clean": 1,
        "video": 1,
        "model_3d": 3,
    }
    for result in finished["model_pose12"]["results"] + finished["basic_clean"]["results"]:
        Image.open(io.BytesIO(httpx.get(result["url"]).raise_for_status().content)).verify()
    assert httpx.get(finished["video"]["results"][0]["url"]).content[4:8] == b"ftyp"
    assert httpx.get(stack.lines["docs"] + "/openapi.json").status_code == 200
    metrics = httpx.get(stack.lines["metrics"]).text
    assert 'genq_jobs_finished_total{kind="model_pose12",status="succeeded"} 1.0' in metrics
    assert 'genq_jobs_submitted_total{kind="video"} 1.0' in metrics

    stack.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert stack.proc.wait(timeout=60) == 0
    wait_for(lambda: _ours_alive(stack.var_dir) == [], timeout_s=10, what="every process of the stack to end")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stack.api}/healthz", timeout=2)


def _wait(stack: Stack, headers: dict[str, str], job_id: str, timeout_s: float = 90) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{stack.api}/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in ("succeeded", "failed", "timed_out", "audit_failed") else None

    return wait_for(ended, timeout_s=timeout_s, what=f"job {job_id} to end")


def test_with_moderation_on_inputs_are_checked_and_pushes_arrive_over_http(audited_stack: Stack) -> None:
    stack = audited_stack
    httpx.post(f"{stack.lines['sim-kie']}/__sim/config", json={"generating_s": 0.5}).raise_for_status()
    user = json.loads(stack.genq("users", "create", "--phone", f"137{uuid.uuid4().int % 10**8:08d}", "--credits", "40"))
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    garment = stack.lines["sample image"]
    bodies = {
        "clean": ("basic_clean", {"image_url": garment}),
        "rejected image": ("basic_clean", {"image_url": garment + "?sim-reject"}),
        "clean text": ("video", {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a calm sea"}),
    }

    first = {
        name: httpx.post(f"{stack.api}/v1/jobs", json={"kind": k, "input": b}, headers=headers).json()
        for name, (k, b) in bodies.items()
    }
    finished = {name: _wait(stack, headers, job["id"])["status"] for name, job in first.items()}

    assert {job["status"] for job in first.values()} == {"pending_audit"}
    assert finished == {"clean": "succeeded", "rejected image": "audit_failed", "clean text": "succeeded"}
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=60) == 0


def test_make_run_logs_in_by_sms_and_pays_orders_by_itself(stack: Stack) -> None:
    phone = f"+86138{uuid.uuid4().int % 10**8:08d}"
    assert httpx.post(f"{stack.api}/v1/auth/sms-code", json={"phone": phone}).status_code == 202
    sms = stack.lines["sim-sms"]
    last = wait_for(
        lambda: (r := httpx.get(f"{sms}/__sim/sms/last", params={"phone": phone})).status_code == 200 and r,
        timeout_s=30,
        what="the SMS",
    )
    tokens = httpx.post(f"{stack.api}/v1/auth/login", json={"phone": phone, "code": last.json()["code"]}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    orders = [
        httpx.post(f"{stack.api}/v1/orders", json={"plan": "pro", "channel": c}, headers=headers).json()
        for c in ("wechat", "alipay")
    ]
    for order in orders:
        url = f"{stack.api}/v1/orders/{order['id']}"
        wait_for(
            lambda url=url: httpx.get(url, headers=headers).json()["status"] == "paid",
            timeout_s=30,
            what=f"the {order['channel']} order to be paid",
        )
    member = httpx.get(f"{stack.api}/v1/membership", headers=headers).json()

    assert orders[0]["payment"]["code_url"].startswith("weixin://")
    assert orders[1]["payment"]["qr_code"].startswith("https://qr.alipay.com/")
    assert member["member"] is True and member["credits"] == 200
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=60) == 0


def test_after_a_sigkill_to_genq_run_none_of_its_processes_or_ports_is_left(embedded_stack: Stack) -> None:
    """The children notice their parent is gone: the pools, the API and the embedded Redis all end."""
    stack = embedded_stack  # embedded Redis and S3, every simulator
    ports = [int(value) for name, value in stack.env.items() if name.endswith("_PORT")]
    assert _ours_alive(stack.var_dir) and any(_listening(port) for port in ports)

    stack.proc.kill()
    stack.proc.wait()

    def nothing_left() -> bool:
        return not _ours_alive(stack.var_dir) and not any(_listening(port) for port in ports)

    try:
        wait_for(nothing_left, timeout_s=10, what="every process and port of genq run to be gone")
    except AssertionError:
        alive = {pid: _command(pid) for pid in _ours_alive(stack.var_dir)}
        raise AssertionError(f"left behind: {alive}, ports {[p for p in ports if _listening(p)]}") from None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _command(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "(gone)"


def test_a_result_stored_before_a_restart_still_downloads(tmp_path: Path) -> None:
    """`make run` stopped (Ctrl-C) and started again on the same var dir: the embedded S3 kept it."""
    env = _stack_env(tmp_path, external=False)
    first = _start_stack(env)
    stack = next(first)
    user = json.loads(stack.genq("users", "create", "--phone", f"136{uuid.uuid4().int % 10**8:08d}", "--credits", "5"))
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    body = {"kind": "basic_clean", "input": {"image_url": stack.lines["sample image"]}}
    job = httpx.post(f"{stack.api}/v1/jobs", json=body, headers=headers).json()
    before = _wait(stack, headers, job["id"])
    stored = httpx.get(before["results"][0]["url"]).raise_for_status().content
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=60) == 0
    first.close()

    second = _start_stack(env)
    again = next(second)
    after = httpx.get(f"{again.api}/v1/jobs/{job['id']}", headers=headers).json()
    download = httpx.get(after["results"][0]["url"])
    again.proc.send_signal(signal.SIGINT)
    assert again.proc.wait(timeout=60) == 0
    second.close()

    assert before["status"] == after["status"] == "succeeded"
    assert download.status_code == 200 and download.content == stored


@pytest.mark.parametrize("setting", ["EMBEDDED_REDIS_PORT", "EMBEDDED_S3_PORT", "SIM_KIE_PORT", "API_PORT"])
def test_a_taken_port_stops_genq_run_naming_the_port_its_holder_and_its_setting(tmp_path: Path, setting: str) -> None:
    env = _stack_env(tmp_path, external=False)
    with socket.socket() as holder:  # a stranger on the port (here: this test process)
        holder.bind(("127.0.0.1", int(env[setting])))
        holder.listen()

        done = subprocess.run(
            [sys.executable, "-m", "genq.cli", "run"], check=False, env=env, capture_output=True, text=True, timeout=120
        )

    assert done.returncode == 1
    assert f"port {env[setting]} is taken by pid {os.getpid()} (" in done.stderr
    assert f"set {setting} to use another port" in done.stderr
    assert "ready" not in done.stdout
    assert _ours_alive(Path(env["VAR_DIR"])) == []
