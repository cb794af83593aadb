"""Helpers for the fault test (tests/integration/test_faults.py): simulators on loopback whose lost
answers are really lost, worker pools as processes that can be SIGKILLed and restarted, and the
arithmetic of the checks (which vendor tasks overlapped)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from infra.serving import ServerThread
from infra.settings import Secret, Settings
from vendors.sim.common import SimTask, asgi_app, max_overlap

ROOT = Path(__file__).resolve().parents[1]
LOST = "x-faults-lost-answer"


# --- simulators on loopback --------------------------------------------------------------------


def serve(handle: Callable[[httpx.Request], httpx.Response], port: int) -> ServerThread:
    """Serve a simulator on loopback, where a lost answer (`lost_answer_rate`: the request was
    processed, then `httpx.ReadTimeout`) drops the connection in the middle of the response.

    `vendors.sim.common.asgi_app` answers such a request with HTTP 502, which a client takes for a
    transient error and retries: over loopback the vendor would then run a task nobody knows of.
    Here the caller sees what a real lost answer looks like (the peer closed the connection).
    """

    def marked(request: httpx.Request) -> httpx.Response:
        try:
            return handle(request)
        except httpx.ReadTimeout:
            return httpx.Response(200, headers={LOST: "1"})

    return ServerThread(_dropping(asgi_app(marked)), host="127.0.0.1", port=port).start()


def _dropping(app: Any) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        lost = False

        async def watch(message: dict[str, Any]) -> None:
            nonlocal lost
            if message["type"] == "http.response.start":
                lost = any(name.lower() == LOST.encode() for name, _ in message.get("headers", []))
                if lost:  # promise a body that never comes; uvicorn then closes the connection
                    message = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
            if not (lost and message["type"] == "http.response.body"):
                await send(message)

        await app(scope, receive, watch)

    return wrapped


class QuietDrops(logging.Filter):
    """uvicorn logs every connection we drop on purpose as an error; those lines are expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


# --- worker pools as processes -----------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting that has a value, as the environment variable a genq process reads it from.

    Empty ones are left out: genq reads "" as unset anyway, but some libraries do not (a set but
    empty PROMETHEUS_MULTIPROC_DIR makes prometheus_client write its files into the cwd).
    """
    env: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        if str(value):
            env[f.name.upper()] = str(value)
    return env


@dataclass
class Pools:
    """`genq worker QUEUE` processes, one per entry of `names` (a name like `generation-2` runs the
    `generation` queue). Each carries `marker` in its environment, so none can hide after `stop()`."""

    env: dict[str, str]
    log_dir: Path
    names: tuple[str, ...]
    marker: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def start(self, name: str) -> None:
        queue = name.split("-", maxsplit=1)[0]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            command = [sys.executable, "-m", "genq.cli", "worker", queue]
            self.procs[name] = subprocess.Popen(
                command, env=self._env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts[name] = self.starts.get(name, 0) + 1

    def start_all(self) -> None:
        """Compile what a pool imports once, then start every pool."""
        warm = [sys.executable, "-c", "import genq.cli, workers.boot, workers.actors"]
        subprocess.run(warm, env=self._env(), cwd=ROOT, check=True, timeout=120)
        for name in self.names:
            self.start(name)

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "GENQ_FAULTS_RUN": self.marker, "SUPERVISOR_PID": str(os.getpid())}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each pool keeps its metrics in memory
        # Compiled modules are kept outside the work tree, so that a restart does not compile every
        # module again (with PYTHONDONTWRITEBYTECODE each boot would cost seconds of CPU).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.log_dir / "pycache")
        return env

    def serving(self, name: str) -> bool:
        """The latest process of this pool has logged that it serves its queue."""
        return (self.log_dir / f"{name}.log").read_bytes().count(b'"worker_started"') >= self.starts[name]

    def all_serving(self) -> bool:
        return all(self.serving(name) for name in self.names)

    def kill_and_restart(self, rng: random.Random, among: Iterable[str] | None = None) -> str | None:
        """SIGKILL one pool (of `among`, or any) that is serving (a process still booting is not
        worth killing again), one of those killed least so far (every pool gets its turn), and
        start it again at once; its name, or None when none is serving."""
        candidates = [name for name in among or self.names if self.serving(name)]
        if not candidates:
            return None
        fewest = min(self.kills.get(name, 0) for name in candidates)
        name = rng.choice([name for name in candidates if self.kills.get(name, 0) == fewest])
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills[name] = self.kills.get(name, 0) + 1
        with (self.log_dir / f"{name}.log").open("a") as log:  # for whoever reads the log afterwards
            log.write(json.dumps({"timestamp": _utc_now(), "event": "faults_sigkill", "pid": proc.pid}) + "\n")
        self.start(name)
        return name

    def exited(self) -> dict[str, int | None]:
        """Pools whose latest process has ended on its own (nothing restarts those), by exit code."""
        return {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        """SIGTERM every pool (a graceful stop), SIGKILL what is left; the names that had to be killed."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline, forced = time.monotonic() + timeout_s, []
        for name, proc in self.procs.items():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                forced.append(name)
        return forced

    def alive(self) -> list[int]:
        """Processes of this run still alive: any process whose environment carries the marker."""
        return list(marked_processes(self.marker))


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def marked_processes(marker: str) -> Iterator[int]:
    needle = f"GENQ_FAULTS_RUN={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                yield int(entry.name)
        except OSError:  # gone meanwhile, or not ours to read
            continue


def settle(probe: Callable[[], object], *, timeout_s: float, every_s: float = 0.25) -> bool:
    """Wait on the condition `probe` until it holds; False if it still does not after `timeout_s`
    (the caller then asserts with the details, instead of a bare timeout). Unhurried: the probes
    read the database that the pools are busy with, from the process that also serves S3 and the
    simulators."""
    deadline = time.monotonic() + timeout_s
    idle = threading.Event()  # never set: its wait is the pause between two looks
    while not probe():
        if time.monotonic() > deadline:
            return False
        idle.wait(every_s)
    return True


# --- what the vendors saw ----------------------------------------------------------------------


def overlap(tasks: Iterable[SimTask], phases: Sequence[float]) -> int:
    """The most of these tasks unfinished at one instant, each running through `phases` (seconds)
    from its creation.

    A simulator fixes a task's end when it creates it (its creation time plus each phase knob, added
    in this order); only a cancel moves it earlier, so for a cancelled task this is an upper bound.
    """
    return max_overlap((t.created_at, _end(t.created_at, phases)) for t in tasks)


def _end(start: float, phases: Sequence[float]) -> float:
    for phase in phases:
        start += phase
    return start
