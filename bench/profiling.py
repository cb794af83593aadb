"""`python -m bench api --profile DIR`: py-spy samples the genq API process while the prompt-only submit
row runs, and the bench prints where the time went.

py-spy (the dev group) reads the process from outside: no code change, no restart. Two recordings
of the same row: every thread, waiting ones too (`--idle`: wall time, where a request waits; threads
with nothing to do are left out), and the thread holding the GIL only (`--gil`: the CPU the process
burns in Python, which bounds it once it nears one core).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RATE = 100  # samples a second, each thread
GENQ = ("api/", "infra/", "domain/", "workers/", "vendors/")
WAITING = ("threading.py", "queue.py", "selectors.py", "concurrent/futures/thread.py")  # blocked, not on I/O
NOT_REQUESTS = ("infra/lifetime.py", "bench/")  # the parent watch, the bench's counters
WAITS = {  # the leaf frame's file -> what the thread waits on
    "psycopg/": "waiting on PostgreSQL",
    "sqlite3": "SQLite",
    "redis/": "waiting on Redis",
    "httpx/": "HTTP client (input image fetch)",
    "httpcore/": "HTTP client (input image fetch)",
    "socket.py": "socket I/O",
}
CPU_PARTS = {  # otherwise: running Python, by the package of the leaf frame
    "sqlalchemy/": "CPU: SQLAlchemy (compile, execute, rows)",
    "litestar/": "CPU: Litestar (routing, DI, validation, serialisation)",
    "msgspec/": "CPU: msgspec",
    "json/": "CPU: json",
    "structlog/": "CPU: logging",
    "logging/": "CPU: logging",
    "PIL/": "CPU: Pillow (image decode)",
    "uvicorn/": "CPU: uvicorn (HTTP parsing)",
    "h11/": "CPU: uvicorn (HTTP parsing)",
    "asyncio/": "CPU: asyncio",
    "anyio/": "CPU: anyio (thread hand-off)",
}


class Recorder:
    def __init__(self, directory: Path, name: str, seconds: float) -> None:
        self.raw = {"wall": directory / f"{name}-wall.txt", "gil": directory / f"{name}-gil.txt"}
        self.seconds = seconds
        self.error = ""

    @contextmanager
    def __call__(self, pid: int) -> Iterator[None]:
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            self.error = "py-spy is not installed (it is in the dev group: make install)"
            yield
            return
        self.raw["wall"].parent.mkdir(parents=True, exist_ok=True)
        argv = [spy, "record", "--pid", str(pid), "--duration", str(math.ceil(self.seconds)), "--rate", str(RATE)]
        argv += ["--nonblocking", "--format", "raw"]
        views = (("wall", "--idle"), ("gil", "--gil"))
        commands = [[*argv, flag, "--output", str(self.raw[view])] for view, flag in views]
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for cmd in commands]  # noqa: S603
        try:
            yield
        finally:
            for proc in procs:
                _, err = proc.communicate(timeout=self.seconds + 60)
                if proc.returncode:
                    self.error = f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-300:]}"

    def summary(self, top: int = 12) -> str:
        if self.error or not all(path.exists() for path in self.raw.values()):
            return f"profile: {self.error or 'nothing recorded'}"
        lines = [
            "profile of the genq API process during the prompt-only submit row (py-spy, "
            f"{RATE} samples/s; {self.raw['wall'].parent}):"
        ]
        lines += _shares("wall time of the threads at work (--idle): what they were doing", self.raw["wall"], top)
        lines += _shares("CPU in Python (--gil): what the thread holding the GIL ran", self.raw["gil"], top)
        return "\n".join(lines)


def _shares(title: str, raw: Path, top: int) -> list[str]:
    kinds, functions, busy = Counter[str](), Counter[str](), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or _idle(frames):
            continue
        busy += int(count)
        kinds[_kind(frames)] += int(count)
        for name in {_name(frame) for frame in frames if _ours(frame)}:
            functions[name] += int(count)
    if not busy:
        return [f"  {title}: no samples"]
    shown = [(kind, n) for kind, n in kinds.most_common() if n / busy >= 0.01]
    shown.append(("the rest, < 1 % each", busy - sum(n for _, n in shown)))
    lines = [f"  {title}, {busy:,} samples:"]
    lines += [f"  {n / busy:6.1%}  {kind}" for kind, n in shown]
    lines.append("    genq functions on the stack (inclusive):")
    lines += [f"  {n / busy:6.1%}  {name}" for name, n in functions.most_common(top)]
    return lines


def _idle(frames: list[str]) -> bool:
    """A thread with nothing to do: blocked outside any request (or a watcher of ours)."""
    if any(_file(frame).startswith(NOT_REQUESTS) for frame in frames):
        return True
    return _file(frames[-1]).endswith(WAITING) and not any(_ours(frame) for frame in frames)


def _kind(frames: list[str]) -> str:
    path = _file(frames[-1])
    if path.endswith(WAITING):
        pooled = any("sqlalchemy/pool" in _file(frame) for frame in frames)
        return "waiting for a pooled database connection" if pooled else "waiting on a lock or a thread"
    for marker, kind in {**WAITS, **CPU_PARTS}.items():
        if marker in path:
            return kind
    return "CPU: genq's own code" if _ours(frames[-1]) else f"CPU: other ({path.split('/')[0]})"


def _ours(frame: str) -> bool:
    return _file(frame).startswith(GENQ)


def _file(frame: str) -> str:
    return frame.rpartition(" (")[2].rpartition(":")[0]


def _name(frame: str) -> str:
    function, _, where = frame.rpartition(" (")
    return f"{function} ({where.rpartition(':')[0]})"
