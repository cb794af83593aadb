"""A worker process's `GET /metrics` on WORKER_METRICS_PORT, for a scraper that reaches each pod.

It exposes the process's own families only: `infra.metrics.render` without the API's
`ClusterCollector`, whose room, queue and state gauges come from Redis and the database and are the
API's to export once for the whole cluster (the same gauges from every pod would be counted again).

Several processes on one host given the same port (a pool started N times, `genq run`): the first
binds it and, with a shared PROMETHEUS_MULTIPROC_DIR, serves every process's files once; the others
find the port taken, say so at debug level and try again every `retry_s`, so one of them takes over
when the holder stops. Without a shared directory the others' metrics reach no scrape: a warning.
"""

from __future__ import annotations

import errno
import functools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from infra import metrics
from infra.settings import Settings

log = structlog.get_logger()
RETRY_S = 10.0
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - the scraper reaches the pod's address, not its loopback


class MetricsServer:
    """Serves `GET /metrics` from a daemon thread once the port is bound, until `close()`."""

    def __init__(self, port: int, multiproc_dir: str, *, host: str = EVERY_INTERFACE, retry_s: float = RETRY_S) -> None:
        self.port, self._multiproc_dir, self._host, self._retry_s = port, multiproc_dir, host, retry_s
        self._closed = threading.Event()
        self._lock = threading.Lock()  # `_closed` and `_server` change together under it
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def serving(self) -> bool:
        """This process holds the port (not after `close()`)."""
        return self._server is not None

    def start(self) -> MetricsServer:
        """Try the port now (so the first scrape finds it), then serve, or retry, in the thread."""
        self._server = bound = self._bind()
        if bound is None and self._multiproc_dir:
            log.debug("worker_metrics_port_taken", port=self.port, served_by="its holder, from the multiproc dir")
        elif bound is None:
            log.warning("worker_metrics_port_taken", port=self.port, served_by="nobody: no PROMETHEUS_MULTIPROC_DIR")
        self._thread = threading.Thread(target=self._serve, args=(bound,), name=f"metrics:{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            server, self._server = self._server, None
        if server is not None:  # its serve_forever runs, or is about to, in the thread that bound it
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self, server: ThreadingHTTPServer | None) -> None:
        """Serve `server` (bound by `start`, so `close` finds it), or bind the port once it is free."""
        while server is None:
            if self._closed.wait(self._retry_s):
                return
            server = self._bind()
            with self._lock:
                if server is not None and self._closed.is_set():
                    server.server_close()
                    return
                self._server = server
        log.info("worker_metrics_serving", port=self.port)
        server.serve_forever(poll_interval=0.5)

    def _bind(self) -> ThreadingHTTPServer | None:
        handler = functools.partial(_Handler, multiproc_dir=self._multiproc_dir)
        try:
            return ThreadingHTTPServer((self._host, self.port), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return None


def start(settings: Settings) -> MetricsServer | None:
    """The process's metrics server, when WORKER_METRICS_PORT is set (0: none)."""
    if not settings.worker_metrics_port:
        return None
    return MetricsServer(settings.worker_metrics_port, settings.prometheus_multiproc_dir).start()


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, *args: Any, multiproc_dir: str, **kwargs: Any) -> None:
        self.multiproc_dir = multiproc_dir  # before super(): it handles the request
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # http.server's name
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        try:
            body, content_type = metrics.render(self.multiproc_dir)
        except Exception:
            log.exception("worker_metrics_failed")
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line on stderr per scrape is noise."""
