"""A worker's health signal: the heartbeat file its threads keep fresh, and the probe that reads it.

Clocks are injected (a beat "at 1000 s", a probe "at 1031 s"): nothing here waits for time to pass,
except the last test, which starts a real `genq worker` and waits for its first beat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from genq import cli
from tests.support import wait_for
from workers import health

QUEUES = ["generation"]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def heartbeat(var_dir: Path, clock: Clock, *, alive: bool = True, database: bool = True) -> health.Heartbeat:
    return health.Heartbeat(
        health.beat_path(var_dir, QUEUES),
        alive=lambda: alive,
        checks={"database": lambda: database, "redis": lambda: True},
        clock=clock,
    )


def probe(var_dir: Path, at: float, *flags: str) -> int:
    return health.main([*QUEUES, *flags], env={"VAR_DIR": str(var_dir)}, clock=lambda: at)


def test_a_fresh_heartbeat_passes_liveness_and_readiness(tmp_path: Path) -> None:
    heart = heartbeat(tmp_path, Clock(1000.0))

    heart.check()

    assert probe(tmp_path, 1029.0) == 0
    assert probe(tmp_path, 1029.0, "--ready") == 0


def test_a_stale_heartbeat_fails_both(tmp_path: Path) -> None:
    heartbeat(tmp_path, Clock(1000.0)).check()

    alive, ready = probe(tmp_path, 1031.0), probe(tmp_path, 1031.0, "--ready")

    assert (alive, ready) == (1, 1)


def test_no_heartbeat_fails_both(tmp_path: Path) -> None:
    assert (probe(tmp_path, 1000.0), probe(tmp_path, 1000.0, "--ready")) == (1, 1)


def test_max_age_is_the_probes_to_choose(tmp_path: Path) -> None:
    heartbeat(tmp_path, Clock(1000.0)).check()

    assert probe(tmp_path, 1100.0, "--max-age", "120") == 0
    assert probe(tmp_path, 1100.0, "--max-age", "60") == 1


def test_a_dead_dramatiq_thread_stops_the_beat(tmp_path: Path) -> None:
    heartbeat(tmp_path, Clock(1000.0)).check()
    dead = heartbeat(tmp_path, Clock(1040.0), alive=False)

    dead.beat()
    dead.check()

    assert probe(tmp_path, 1040.0) == 1


def test_an_unreachable_database_makes_the_worker_unready_not_dead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heartbeat(tmp_path, Clock(1000.0), database=False).check()

    alive, ready = probe(tmp_path, 1005.0), probe(tmp_path, 1005.0, "--ready")

    assert (alive, ready) == (0, 1)
    assert "unreachable: database" in capsys.readouterr().err


def test_a_check_that_raises_counts_as_failing(tmp_path: Path) -> None:
    def broken() -> bool:
        raise ConnectionError("no route to host")

    heart = health.Heartbeat(
        health.beat_path(tmp_path, QUEUES), alive=lambda: True, checks={"redis": broken}, clock=Clock(1000.0)
    )

    heart.check()

    assert probe(tmp_path, 1000.0, "--ready") == 1


def test_beats_without_fresh_checks_keep_it_alive_but_not_ready(tmp_path: Path) -> None:
    """A check stuck on a dead network: the beat goes on, the verdict ages."""
    clock = Clock(1000.0)
    heart = heartbeat(tmp_path, clock)
    heart.check()

    clock.now = 1100.0
    heart.beat()

    assert (probe(tmp_path, 1100.0), probe(tmp_path, 1100.0, "--ready")) == (0, 1)


def test_the_path_names_the_queues_in_any_order(tmp_path: Path) -> None:
    assert health.beat_path(tmp_path, ["polling", "generation"]) == health.beat_path(
        tmp_path, ["generation", "polling"]
    )
    assert health.beat_path(tmp_path, ["polling"]) != health.beat_path(tmp_path, ["generation"])


def test_alive_follows_the_dramatiq_workers_threads() -> None:
    broker = StubBroker()
    broker.declare_queue("generation")
    worker = dramatiq.Worker(broker, queues={"generation"}, worker_threads=1, worker_timeout=10)

    worker.start()
    running = health.threads_alive(worker)
    worker.stop()

    assert (running, health.threads_alive(worker)) == (True, False)


def test_every_step_runs_until_stop_and_survives_an_error() -> None:
    stop, calls = threading.Event(), list[int]()

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OSError("disk full")
        if len(calls) == 3:
            stop.set()

    health.every(stop, 0.0, step)

    assert calls == [0, 1, 2]


def test_genq_worker_health_reads_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    missing = cli.main(["worker-health", *QUEUES])
    heartbeat(tmp_path, Clock(time.time())).check()

    fresh = cli.main(["worker-health", *QUEUES, "--ready"])

    assert (missing, fresh) == (1, 0)


def test_a_started_worker_pool_beats_and_is_ready(redis_url: str, tmp_path: Path) -> None:
    """`genq worker refunds` on the suite's database and Redis: its probe passes once it is up."""
    env = {**os.environ, "VAR_DIR": str(tmp_path), "REDIS_URL": redis_url, "LOG_FORMAT": "json"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "genq.cli", "worker", "refunds", "--threads", "1"], env=env, process_group=0
    )
    try:
        wait_for(lambda: _probe_passes(env, worker), timeout_s=60, what="genq worker refunds to beat")

        worker.send_signal(signal.SIGTERM)

        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def _probe_passes(env: dict[str, str], worker: subprocess.Popen[bytes]) -> bool:
    assert worker.poll() is None, "the worker exited"
    return health.main(["refunds", "--ready"], env=env) == 0
