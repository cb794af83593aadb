"""`genq api --workers N`: one port, N processes, each answering from resources of its own.

Which process answered is read from the kernel, not from the API (no response names a process): the
server side of each client connection is a socket in /proc/net/tcp, and /proc/<pid>/fd says which
worker holds it. The kernel hands each new connection to whichever worker accepts first, so the test
opens connections (keeping them) until two workers have each answered one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from http.client import HTTPConnection
from pathlib import Path

import httpx
import pytest

from infra.embedded import free_port
from tests.support import wait_for

MAX_CONNECTIONS = 200  # two idle workers race for every accept; 200 to one of them does not happen


@pytest.fixture
def api_with_two_workers(redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`genq api --workers 2` on the suite's database (DATABASE_URL, or an SQLite file) and Redis."""
    port = free_port()
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"), "API_PORT": str(port), "REDIS_URL": redis_url}
    server = subprocess.Popen([sys.executable, "-m", "genq.cli", "api", "--workers", "2"], env=env, process_group=0)
    try:
        wait_for(lambda: _answers(server, port), timeout_s=60, what="genq api --workers 2 to answer")
        yield server, port
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(30)


def test_two_worker_processes_each_answer_with_their_own_database_and_redis(
    api_with_two_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    server, port = api_with_two_workers
    workers = _children(server.pid)
    answered: dict[int, int] = {}  # worker pid -> status of the /readyz it answered

    with ExitStack() as open_connections:
        for _ in range(MAX_CONNECTIONS):
            conn = HTTPConnection("127.0.0.1", port, timeout=10)
            open_connections.callback(conn.close)
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            response.read()
            answered.setdefault(_holder(port, conn, workers), response.status)
            if len(answered) == 2:
                break

    assert len(answered) == 2 and set(answered) <= workers, (answered, workers)
    assert set(answered.values()) == {200}


def test_stopping_genq_api_stops_every_worker(api_with_two_workers: tuple[subprocess.Popen[bytes], int]) -> None:
    server, port = api_with_two_workers
    workers = {pid for pid in _children(server.pid) if _serves(pid, port)}

    server.send_signal(signal.SIGTERM)

    assert server.wait(30) == 0
    assert len(workers) == 2
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout_s=10, what="workers gone")


def _answers(server: subprocess.Popen[bytes], port: int) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"genq api exited with {server.returncode}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _holder(port: int, conn: HTTPConnection, pids: set[int]) -> int:
    """The process holding the server side of `conn` (local port `port`, remote our client port)."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = next(
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == client_port
    )
    return next(pid for pid in pids if f"socket:[{inode}]" in _sockets(pid))


def _serves(pid: int, port: int) -> bool:
    """Whether `pid` holds the listening socket on `port`."""
    listening = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A"  # TCP_LISTEN
    }
    return any(f"socket:[{inode}]" in _sockets(pid) for inode in listening)


def _sockets(pid: int) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.add(os.readlink(fd))
        except OSError:
            continue
    return links
