"""A worker process's health signal: a heartbeat file that an exec probe reads.

A worker pool serves no HTTP, and `genq run` puts every pool on one host, so instead of a port each
process keeps `VAR_DIR/health/worker-<queues>.json` fresh from two daemon threads, every BEAT_S:
- the beat: while every Dramatiq consumer and worker thread is alive, `alive_at` (liveness);
- the checks: the database and Redis answer or not, `checked_at` and `failing` (readiness). They
  run apart from the beat, so a check stuck on a dead network makes the pod unready, never restarted
  (as the API's /healthz and /readyz: an outage of a service is not cured by a restart).

`python -m workers.health QUEUE... [--ready]` reads the file with no app import (the probes run it
every few seconds) and exits 0 if fresh, 1 if stale or missing; `genq worker-health` is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from infra.settings import Settings

if TYPE_CHECKING:
    import dramatiq

    from infra.resources import Resources

log = structlog.get_logger()
BEAT_S = 5.0
MAX_AGE_S = 30.0  # six beats missed


@dataclass(frozen=True)
class Beat:
    alive_at: float  # every Dramatiq thread of the process was alive then
    checked_at: float  # the database and Redis were last checked then (0: not yet)
    failing: tuple[str, ...]  # the checks that failed then


def beat_path(var_dir: Path, queues: Sequence[str]) -> Path:
    return var_dir / "health" / f"worker-{'+'.join(sorted(set(queues)))}.json"


class Heartbeat:
    """The last check's verdict, and the file it is written to with the time of the latest beat."""

    def __init__(
        self,
        path: Path,
        *,
        alive: Callable[[], bool],
        checks: Mapping[str, Callable[[], bool]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self._alive, self._checks, self._clock = path, alive, checks, clock
        self._verdict: tuple[float, tuple[str, ...]] = (0.0, ())  # (checked_at, failing): one swap
        self._lock = threading.Lock()

    def check(self) -> None:
        failing = tuple(name for name, passes in self._checks.items() if not _passes(passes))
        if failing and failing != self._verdict[1]:
            log.warning("worker_unready", failing=list(failing))
        elif self._verdict[1] and not failing:
            log.info("worker_ready")
        self._verdict = (self._clock(), failing)
        self.beat()

    def beat(self) -> None:
        """Write the file, unless a Dramatiq thread died: then it goes stale and liveness fails."""
        if not self._alive():
            return
        checked_at, failing = self._verdict
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(f".{os.getpid()}.tmp")  # processes sharing VAR_DIR never collide
            scratch.write_text(json.dumps(asdict(Beat(self._clock(), checked_at, failing))))
            scratch.replace(self.path)  # a probe never reads half a file


def start(
    stop: threading.Event, settings: Settings, queues: Sequence[str], worker: dramatiq.Worker, resources: Resources
) -> Heartbeat:
    """Check and beat once now (the first probe finds a file), then every BEAT_S until `stop`."""
    heart = Heartbeat(
        beat_path(settings.var_dir, queues),
        alive=lambda: threads_alive(worker),
        checks={"database": resources.database_ok, "redis": resources.redis_ok},
    )
    heart.check()
    for name, step in (("heartbeat", heart.beat), ("health-checks", heart.check)):
        threading.Thread(target=every, args=(stop, BEAT_S, step), name=name, daemon=True).start()
    return heart


def threads_alive(worker: dramatiq.Worker) -> bool:
    threads = [*worker.consumers.values(), *worker.workers]
    return bool(threads) and all(thread.is_alive() for thread in threads)


def every(stop: threading.Event, interval_s: float, step: Callable[[], None]) -> None:
    """`step` every `interval_s` until `stop` is set; an error is logged, never the end of the loop."""
    while not stop.wait(interval_s):
        try:
            step()
        except Exception:
            log.exception("health_step_failed")


def probe(path: Path, *, now: float, max_age_s: float = MAX_AGE_S, ready: bool = False) -> tuple[bool, str]:
    """Liveness: a beat within `max_age_s`. With `ready`, also a check within it that all passed."""
    beat = _read(path)
    if beat is None:
        return False, f"no heartbeat in {path}"
    if now - beat.alive_at > max_age_s:
        return False, f"last heartbeat {now - beat.alive_at:.0f} s ago (more than {max_age_s:g} s)"
    if ready and now - beat.checked_at > max_age_s:
        return False, f"database and Redis last checked {now - beat.checked_at:.0f} s ago"
    if ready and beat.failing:
        return False, f"unreachable: {', '.join(beat.failing)}"
    return True, f"alive {now - beat.alive_at:.0f} s ago" + (", database and Redis reachable" if ready else "")


def main(
    argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time
) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.health", description="a worker pool's health")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_probe(Settings.from_env(env), args, now=clock())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queues", nargs="+", metavar="QUEUE", help="the queues of the worker, as started")
    parser.add_argument("--ready", action="store_true", help="also: the database and Redis answered")
    parser.add_argument("--max-age", type=float, default=MAX_AGE_S, help=f"seconds ({MAX_AGE_S:g})")


def run_probe(settings: Settings, args: argparse.Namespace, *, now: float) -> int:
    ok, why = probe(beat_path(settings.var_dir, args.queues), now=now, max_age_s=args.max_age, ready=args.ready)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _passes(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:
        return False


def _read(path: Path) -> Beat | None:
    try:
        raw = json.loads(path.read_text())
        return Beat(float(raw["alive_at"]), float(raw["checked_at"]), tuple(raw["failing"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
