"""Processes started by `genq run` stop when it does, even if it is killed outright."""

from __future__ import annotations

import os
import signal
import threading


def exit_with_parent(parent_pid: int, *, interval_s: float = 1.0) -> None:
    """If `parent_pid` is set, send ourselves SIGTERM (a graceful stop) once it is gone."""
    if not parent_pid:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
