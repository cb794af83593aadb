"""Processes the bench starts (API servers, a worker pool) and what it reads about them from /proc.

A child gets the bench's settings through its environment, as `genq run` gives its children theirs,
writes its log to a file in the bench's temporary directory (shown if it dies), and stops when the
bench does, even if the bench is killed (`SUPERVISOR_PID`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infra.settings import Secret, Settings, child_env

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that `Settings.from_env()` reads back as `settings` (secrets revealed)."""

    def text(value: object) -> str:
        if isinstance(value, Secret):
            return value.reveal()
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {f.name.upper(): text(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; its log ends:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def cpu_s(self) -> float:
        """User + system CPU time this process has used so far (every thread)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name}")


@contextmanager
def child(name: str, argv: Sequence[str], settings: Settings, **extra: str) -> Iterator[Child]:
    """`python argv...` with `settings` (and `extra` variables) in its environment; stopped on exit."""
    log = settings.var_dir / f"{name}.log"
    env = child_env({**settings_env(settings), "SUPERVISOR_PID": str(os.getpid()), **extra})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, *argv], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    started = Child(name, proc, log)
    try:
        yield started
    finally:
        stop(started.proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(proc: Child, url: str, *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.check()
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} did not answer {url} within {timeout_s:.0f} s")


class Stats:
    """Counters a bench child keeps (`bench.counting`), read on demand: SIGUSR1 asks for a fresh copy."""

    def __init__(self, proc: Child, path: Path) -> None:
        self._proc, self._path = proc, path

    def read(self, timeout_s: float = 10) -> dict[str, Any]:
        before = self._seq()
        os.kill(self._proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while (seq := self._seq()) <= before:
            self._proc.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._proc.name} wrote no counters")
            time.sleep(0.01)
        found: dict[str, Any] = json.loads(self._path.read_text())
        if found["seq"] < seq:
            raise RuntimeError("counters went back")
        return found

    def wait(self, probe: Callable[[dict[str, Any]], bool], *, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not probe(found := self.read()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
            time.sleep(0.1)
        return found

    def _seq(self) -> int:
        try:
            return int(json.loads(self._path.read_text())["seq"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return -1
