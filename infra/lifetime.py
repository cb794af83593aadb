"""Processes started by `genq run` stop when it does, even if it is killed outright.

Two notices, since neither covers every case alone. On Linux the kernel tells a child the moment
the thread that started it is gone (`PR_SET_PDEATHSIG`): `orphan_proof` puts a launcher in front
of a command that asks for SIGTERM then, and execs the command in its place, so it works for
redis-server as much as for our own processes. Our own processes also watch their parent
(`exit_with_parent`): that works anywhere, and bounds how long the graceful stop may take.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

PR_SET_PDEATHSIG = 1


def orphan_proof(argv: Sequence[str]) -> list[str]:
    """`argv`, run so that it gets SIGTERM when the calling thread ends (Linux; elsewhere as is).

    Call it from the thread that starts the process, and only from a thread that lives as long as
    the process should: the kernel's notice follows that thread, not the whole parent process.
    """
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-m", "infra.lifetime", str(os.getpid()), *argv]


def exit_with_parent(parent_pid: int, *, interval_s: float = 0.5, grace_s: float = 3.0) -> None:
    """If `parent_pid` is set: once it is gone, send ourselves SIGTERM (a graceful stop), and exit
    outright if that stop is not over within `grace_s` (it may wait on services that died too)."""
    if not parent_pid:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _launch(parent_pid: int, argv: list[str]) -> NoReturn:
    """The launcher: SIGTERM on the parent's death (kept across exec), then become `argv`."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request: no notice will come
        sys.exit(1)
    os.execvp(argv[0], argv)  # noqa: S606 - a command of ours, as a list: no shell


if __name__ == "__main__":
    _launch(int(sys.argv[1]), sys.argv[2:])
