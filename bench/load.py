"""The API table's load: keep-alive HTTP/1.1 connections on loopback, one per client, each sending
its request over and over (the next once the answer has been read), for a fixed time.

A small asyncio client of its own rather than httpx: one request costs it tens of microseconds, so
one process can drive a server much faster than any row here; `client_cpu` (this process's CPU
over the run's time) shows how close it came to being the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.results import quantile


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    expect: int = 200

    def wire(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body or self.method == "POST":
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(frozen=True)
class LoadRun:
    seconds: float
    latencies: tuple[float, ...]  # of the answers with the expected status
    unexpected: dict[int, int]  # status -> count, for every other answer
    client_cpu: float  # this process's CPU time over `seconds`

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, q: float) -> float:
        return quantile(self.latencies, q) if self.latencies else float("nan")


def drive(port: int, requests: Sequence[Request], *, seconds: float) -> LoadRun:
    """One client per request, each sending its request over and over for `seconds`."""
    cpu = time.process_time()
    latencies, unexpected, took = asyncio.run(_run(port, requests, seconds))
    return LoadRun(took, tuple(latencies), unexpected, (time.process_time() - cpu) / took)


async def _run(port: int, requests: Sequence[Request], seconds: float) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    unexpected: dict[int, int] = {}
    started = time.perf_counter()
    stop_at = started + seconds
    host = f"127.0.0.1:{port}"
    clients = (_client(port, r.wire(host), r.expect, stop_at, latencies, unexpected) for r in requests)
    await asyncio.gather(*clients)
    return latencies, unexpected, time.perf_counter() - started


async def _client(
    port: int, wire: bytes, expect: int, stop_at: float, latencies: list[float], unexpected: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (sent := time.perf_counter()) < stop_at:
            writer.write(wire)
            status = await _answer(reader)
            if status == expect:
                latencies.append(time.perf_counter() - sent)
            else:
                unexpected[status] = unexpected.get(status, 0) + 1
    finally:
        writer.close()


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status. Bodies come with Content-Length, or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status
