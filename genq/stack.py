"""`genq run`: the whole system on one machine, on embedded defaults.

This process hosts what stands in for outside services (an embedded Redis and an embedded S3
server as child processes, the vendor simulators in threads) and starts the API and one process per
worker pool, exactly as the Procfile would. Ctrl-C or SIGTERM stops all of it; a child that dies
stops the rest too; and if this process is killed outright (SIGKILL), every process it started
notices and stops by itself (`infra.lifetime`), while what runs in its threads ends with it. The
embedded S3 keeps its objects under `var/s3`, so results stored before a restart still download.
A port that is taken stops it at start-up, naming the port, who holds it and the setting that moves it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from genq import simulators
from infra.db import make_engine
from infra.embedded import EmbeddedRedis, EmbeddedS3, PortTaken, check_port
from infra.lifetime import orphan_proof
from infra.migrate import upgrade
from infra.resources import Resources
from infra.settings import Settings, child_env
from vendors.sim.samples import GARMENTS
from workers.broker import QUEUES

POOLS = QUEUES  # one process per queue, as in the Procfile


def serve_simulators(settings: Settings, *, host: str) -> None:
    """`genq sim`: the simulators alone, until Ctrl-C or SIGTERM.

    The settings that point genq at them (with any credentials made up here) go to
    `var/sim.env`, readable by the owner only, never to the terminal; a POSIX shell loads it.
    """
    try:
        sims = simulators.start(settings, host)
    except PortTaken as exc:
        raise SystemExit(f"genq sim: {exc}") from None
    env_file = settings.var_dir / "sim.env"
    simulators.write_env_file(env_file, sims.env)
    for name, url in sims.urls().items():
        print(f"sim-{name}: {url}", flush=True)
    load = f"set -a; . {shlex.quote(str(env_file))}; set +a"
    print(f"settings for genq: {env_file} (load them with `{load}` before genq api / genq worker)", flush=True)
    _wait_for_signal(threading.Event())
    sims.stop()


def run(settings: Settings) -> int:
    stop = threading.Event()
    _stop_on_signals(stop)
    cleanups: list[Callable[[], None]] = []
    try:
        shown: dict[str, str] = {}
        overrides = _start_services(settings, cleanups, shown)
        embedded_s3 = not settings.s3_endpoint_url
        settings = Settings.from_env(child_env(overrides))
        _prepare_state(settings, embedded_s3=embedded_s3)
        children = _start_children(child_env(overrides))
        cleanups.append(lambda: _stop_children(children))
        _wait_ready(settings, children)
        _announce(settings, overrides, shown)
        return _supervise(children, stop)
    except PortTaken as exc:
        raise SystemExit(f"genq run: {exc}") from None
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


def _start_services(settings: Settings, cleanups: list[Callable[[], None]], shown: dict[str, str]) -> dict[str, str]:
    """Start each embedded stand-in whose setting is unset; the environment the children get.

    What a user would want to open goes into `shown` (name -> URL), for the start-up banner.
    """
    overrides: dict[str, str] = {}
    check_port(settings.api_host, settings.api_port, setting="API_PORT")  # the API starts last: fail first
    if not settings.redis_url:
        redis = EmbeddedRedis(settings.embedded_redis_port, workdir=settings.var_dir / "redis")
        _start(redis.start, "EMBEDDED_REDIS_PORT")
        cleanups.append(redis.stop)
        overrides["REDIS_URL"] = redis.url
    if not settings.s3_endpoint_url:  # objects kept under var/s3: results outlive a restart
        s3 = EmbeddedS3(settings.embedded_s3_port, data_dir=settings.var_dir / "s3")
        _start(s3.start, "EMBEDDED_S3_PORT")
        cleanups.append(s3.stop)
        overrides["S3_ENDPOINT_URL"] = s3.url
    if not settings.run_real_vendors:
        sims = simulators.start(settings)
        cleanups.append(sims.stop)
        overrides |= sims.env
        shown |= {f"sim-{name}": url for name, url in sims.urls().items()}
        shown["sample image"] = f"{sims.urls()['samples']}/samples/garment.png"
        shown["sample photos"] = " ".join(f"{sims.urls()['samples']}/samples/{name}.jpg" for name in GARMENTS)
    metrics_dir = settings.var_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    overrides["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    overrides["VAR_DIR"] = str(Path(settings.var_dir).resolve())
    return overrides


def _start(start: Callable[[], object], setting: str) -> None:
    try:
        start()
    except PortTaken as exc:
        raise exc.moved_by(setting) from None


def _prepare_state(settings: Settings, *, embedded_s3: bool) -> None:
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    resources = Resources.open(settings)
    resources.storage.ensure_bucket()
    if embedded_s3:  # the workbench's pages upload straight to it (a bucket of your own: set its CORS)
        resources.storage.allow_browser_uploads(["*"])
    resources.close()


def _start_children(env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    genq = [sys.executable, "-m", "genq.cli"]
    commands = {"api": [*genq, "api"]} | {pool: [*genq, "worker", pool] for pool in POOLS}
    env = {**env, "SUPERVISOR_PID": str(os.getpid())}  # they watch us, and stop when we are gone
    # Own process groups: a terminal's Ctrl-C reaches only us, and we stop the pools before Redis.
    # Orphan-proof: if we are killed outright, the kernel sends each of them SIGTERM.
    return {
        name: subprocess.Popen(orphan_proof(cmd), env=env, process_group=0)  # noqa: S603
        for name, cmd in commands.items()
    }


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


def _announce(settings: Settings, overrides: dict[str, str], shown: dict[str, str]) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    lines = [f"api: {api}", f"docs: {api}/schema", f"metrics: {api}/metrics"]
    lines += [f"workbench: {api}/app", f"console: {api}/console"]
    lines += [f"{name}: {url}" for name, url in shown.items()]
    lines += [f"redis: {overrides.get('REDIS_URL', 'REDIS_URL')}", f"s3: {overrides.get('S3_ENDPOINT_URL', 'S3')}"]
    lines.append(f"database: {make_engine(settings).url.render_as_string(hide_password=True)}")
    lines.append("pools: " + " ".join(POOLS))
    lines.append("ready: create a user with `.venv/bin/genq users create --phone 13800000000 --credits 200`")
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
