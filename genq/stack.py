"""`genq run`: the whole system on one machine, on embedded defaults.

This process hosts what stands in for outside services (an embedded Redis, an embedded S3 server,
the vendor simulators) and starts the API and one process per worker pool, exactly as the Procfile
would. Ctrl-C or SIGTERM stops all of it; a child that dies stops the rest too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from infra.db import make_engine
from infra.embedded import EmbeddedRedis, EmbeddedS3
from infra.migrate import upgrade
from infra.resources import Resources
from infra.serving import ServerThread
from infra.settings import Secret, Settings, child_env
from vendors.sim.common import asgi_app
from vendors.sim.runninghub import RunningHubSim
from workers.broker import QUEUES

POOLS = QUEUES  # one process per queue, as in the Procfile


def start_simulators(settings: Settings, host: str) -> list[ServerThread]:
    sim = RunningHubSim(api_keys=[settings.runninghub_api_key.reveal()])
    return [ServerThread(asgi_app(sim.handle), host=host, port=settings.sim_runninghub_port).start()]


def serve_simulators(settings: Settings, *, host: str) -> None:
    """`genq sim`: the simulators alone, until Ctrl-C or SIGTERM."""
    servers = start_simulators(settings, host)
    for server in servers:
        print(f"sim: {server.url}", flush=True)
    _wait_for_signal(threading.Event())
    for server in servers:
        server.stop()


def run(settings: Settings) -> int:
    stop = threading.Event()
    _stop_on_signals(stop)
    cleanups: list[Callable[[], None]] = []
    try:
        overrides = _start_services(settings, cleanups)
        settings = Settings.from_env(child_env(overrides))
        _prepare_state(settings)
        children = _start_children(child_env(overrides))
        cleanups.append(lambda: _stop_children(children))
        _wait_ready(settings, children)
        _announce(settings, overrides)
        return _supervise(children, stop)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


def _start_services(settings: Settings, cleanups: list[Callable[[], None]]) -> dict[str, str]:
    """Start each embedded stand-in whose setting is unset; the environment the children get."""
    overrides: dict[str, str] = {}
    if not settings.redis_url:
        redis = EmbeddedRedis(settings.embedded_redis_port, workdir=settings.var_dir / "redis").start()
        cleanups.append(redis.stop)
        overrides["REDIS_URL"] = redis.url
    if not settings.s3_endpoint_url:
        s3 = EmbeddedS3(settings.embedded_s3_port).start()
        cleanups.append(s3.stop)
        overrides["S3_ENDPOINT_URL"] = s3.url
    if not settings.run_real_vendors:
        key = settings.runninghub_api_key.reveal() or secrets.token_hex(16)
        overrides["RUNNINGHUB_API_KEY"] = key
        sims = start_simulators(settings.with_(runninghub_api_key=Secret(key)), "127.0.0.1")
        cleanups.extend(server.stop for server in sims)
        overrides["RUNNINGHUB_BASE_URL"] = sims[0].url
    metrics_dir = settings.var_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    overrides["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    overrides["VAR_DIR"] = str(Path(settings.var_dir).resolve())
    return overrides


def _prepare_state(settings: Settings) -> None:
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    resources = Resources.open(settings)
    resources.storage.ensure_bucket()
    resources.close()


def _start_children(env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    genq = [sys.executable, "-m", "genq.cli"]
    commands = {"api": [*genq, "api"]} | {pool: [*genq, "worker", pool] for pool in POOLS}
    env = {**env, "SUPERVISOR_PID": str(os.getpid())}
    # Own process groups: a terminal's Ctrl-C reaches only us, and we stop the pools before Redis.
    return {name: subprocess.Popen(cmd, env=env, process_group=0) for name, cmd in commands.items()}  # noqa: S603


def _wait_ready(settings: Settings, children: dict[str, subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    url = f"http://{settings.api_host}:{settings.api_port}/readyz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children.values()):
            raise SystemExit("a genq process exited during start-up; see its log above")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not become ready at {url}")


def _announce(settings: Settings, overrides: dict[str, str]) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    lines = [f"api: {api}", f"docs: {api}/schema", f"metrics: {api}/metrics"]
    if "RUNNINGHUB_BASE_URL" in overrides:
        lines.append(f"sim: {overrides['RUNNINGHUB_BASE_URL']}")
    lines += [f"redis: {overrides.get('REDIS_URL', 'REDIS_URL')}", f"s3: {overrides.get('S3_ENDPOINT_URL', 'S3')}"]
    lines.append(f"database: {make_engine(settings).url.render_as_string(hide_password=True)}")
    lines.append("pools: " + " ".join(POOLS))
    lines.append("ready: create a user with `.venv/bin/genq users create --phone 13800000000 --credits 10`")
    print("\n".join(lines), flush=True)


def _supervise(children: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> int:
    while not stop.wait(0.5):
        for name, child in children.items():
            if child.poll() is not None:
                print(f"genq: {name} exited with {child.returncode}; stopping everything", file=sys.stderr)
                return 1
    return 0


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def _wait_for_signal(stop: threading.Event) -> None:
    _stop_on_signals(stop)
    stop.wait()
