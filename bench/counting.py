"""Counters inside a process the bench starts: what it asked of the database (every engine of the
process) and the Dramatiq messages it processed. Written to a JSON file when SIGUSR1 asks
(`bench.procs.Stats`), so reading them costs the measured process nothing in between.

Round trips to PostgreSQL per transaction are its statements, plus BEGIN and COMMIT (or ROLLBACK),
plus one pre-ping per connection checkout when the pool pre-pings (psycopg sends each alone).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.default import DefaultDialect

from infra.db import AUTOCOMMIT


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = {"statements": 0, "transactions": 0, "pings": 0, "messages": 0}
        self.first_start = 0.0  # epoch seconds: the first message this process began
        self.last_done = 0.0  # and the last it finished

    def add(self, name: str) -> None:
        with self._lock:
            self.values[name] += 1

    def message_started(self) -> None:
        with self._lock:
            self.first_start = self.first_start or time.time()

    def message_done(self) -> None:
        with self._lock:
            self.values["messages"] += 1
            self.last_done = time.time()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.values, "first_start": self.first_start, "last_done": self.last_done}


COUNTERS = Counters()


class CountMessages(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        COUNTERS.message_started()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        COUNTERS.message_done()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        COUNTERS.message_done()


def _transaction_ended(conn: Connection) -> None:
    if conn.get_execution_options().get("isolation_level") != AUTOCOMMIT:  # `infra.db.reads`: no BEGIN sent
        COUNTERS.add("transactions")


def count_database() -> None:
    """Count every statement, transaction end and pre-ping of every engine in this process."""
    event.listen(Engine, "before_cursor_execute", lambda *_: COUNTERS.add("statements"))
    event.listen(Engine, "commit", _transaction_ended)
    event.listen(Engine, "rollback", _transaction_ended)
    ping = getattr(DefaultDialect, "_do_ping_w_event", None)  # the pool's pre-ping: SQLAlchemy fires no event
    if ping is None:  # a SQLAlchemy without it: pings stay 0
        return

    def counted_ping(self: DefaultDialect, dbapi_connection: Any) -> bool:
        COUNTERS.add("pings")
        return bool(ping(self, dbapi_connection))

    DefaultDialect._do_ping_w_event = counted_ping  # type: ignore[method-assign]


def write_on_request(path: Path) -> None:
    """Write the counters to `path` now (sequence number 0) and again, numbered, on each SIGUSR1."""
    asked = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: asked.set())
    _write(path, 0)

    def writer() -> None:
        seq = 0
        while True:
            asked.wait()
            asked.clear()
            seq += 1
            _write(path, seq)

    threading.Thread(target=writer, name="bench-counters", daemon=True).start()


def _write(path: Path, seq: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seq": seq, "pid": os.getpid(), **COUNTERS.snapshot()}))
    tmp.replace(path)
