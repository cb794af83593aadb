"""`python -m bench.worker genq|noop THREADS STATS_FILE`: the worker process of the pipeline table.

`genq` is `genq worker` on every queue but maintenance (no reconciler: every admission is the
engine's own), through `workers.boot.run` itself; the one change is the bench's counters, added to
the broker's middleware and the database's events. `noop` is raw Dramatiq on the same broker
settings and the same threads: one actor that does nothing, on a queue of its own.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import dramatiq
from dramatiq.middleware import Middleware

from bench.counting import CountMessages, count_database, write_on_request
from infra.lifetime import exit_with_parent
from infra.resources import redis_url
from infra.settings import Settings
from workers import boot, broker

NOOP_QUEUE = "bench_noop"
NOOP_ACTOR = "bench.noop"
QUEUES = tuple(q for q in broker.QUEUES if q != "maintenance")


def counted_middleware() -> list[Middleware]:
    return [*_genq_middleware(), CountMessages()]


_genq_middleware = broker.middleware


def noop() -> None:
    """Does nothing: what a message costs Dramatiq itself."""


def run_noop(settings: Settings, threads: int) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    exit_with_parent(settings.supervisor_pid)
    the_broker = broker.redis_broker(redis_url(settings))
    dramatiq.actor(actor_name=NOOP_ACTOR, queue_name=NOOP_QUEUE, broker=the_broker)(noop)
    worker = dramatiq.Worker(the_broker, queues={NOOP_QUEUE}, worker_threads=threads, worker_timeout=boot.IDLE_FETCH_MS)
    worker.start()
    stop.wait()
    worker.stop(timeout=10_000)
    the_broker.close()


def main(argv: Sequence[str]) -> int:
    kind, threads, stats = argv[0], int(argv[1]), Path(argv[2])
    settings = Settings.from_env()
    broker.middleware = counted_middleware  # every broker made from here on counts its messages
    count_database()
    write_on_request(stats)
    if kind == "genq":
        boot.run(settings, QUEUES, threads=threads)
    else:
        run_noop(settings, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
