"""Pieces every vendor simulator shares (VENDORS.md §11).

A simulator is a plain thread-safe object with `handle(httpx.Request) -> httpx.Response`: tests
mount it with `httpx.MockTransport(sim.handle)`, and `asgi_app(sim.handle)` serves the very same
object on loopback under uvicorn. Nothing here knows a vendor's paths or codes.

Two kinds of "no answer" are injected, and they differ in what the vendor did: `failure_kind =
"transport"` fails before the request is processed (`httpx.ConnectError`: nothing happened), while
`lost_answer_rate` processes the request (a submit creates its task) and then loses the answer
(`httpx.ReadTimeout`, see `lose_answer`). Simulators of vendors that create billable tasks list
every task they created with `created_tasks()`, so tests can find orphans.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import anyio.to_thread
import httpx
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


Handler = Callable[[httpx.Request], httpx.Response]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

K = TypeVar("K", bound="DataclassInstance")

FAILURE_KINDS = frozenset({"http_500", "code_500", "busy", "rate", "transport"})
"""Injected failures: HTTP 500, the vendor's own 500 code, its busy code, its rate-limit code, or no
answer at all before the request was processed (`httpx.ConnectError`; the ASGI adapter turns it into
HTTP 502)."""


def mask_key(key: str) -> str:
    """Credentials are only ever shown as `****` plus their last four characters (none if short)."""
    if len(key) > 8:
        return "****" + key[-4:]
    return "****" if key else ""


# --- knobs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """The knobs every simulator has: injected failures and the seed of its random source. A
    simulator's knobs subclass this (every field with a default); `failure_kinds` lists the kinds it
    can inject."""

    failure_kinds: ClassVar[frozenset[str]] = FAILURE_KINDS
    failure_rate: float | Mapping[str, float] = 0.0  # global, or {endpoint or "*": rate}
    failure_kind: str = "http_500"
    seed: int | None = None

    def __post_init__(self) -> None:
        check_rate("failure_rate", self.failure_rate)
        if self.failure_kind not in self.failure_kinds:
            raise ValueError(f"failure_kind must be one of {sorted(self.failure_kinds)}")


@dataclass(frozen=True)
class ApiKnobs(Knobs):
    """The knobs of a simulated HTTP API: those of `Knobs` and the latency of each answer."""

    latency_ms: float | tuple[float, float] = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_latency(self.latency_ms)


KnobsT = TypeVar("KnobsT", bound=Knobs)
ApiKnobsT = TypeVar("ApiKnobsT", bound=ApiKnobs)


def apply_knobs(knobs: K, changes: Mapping[str, object]) -> K:
    """A copy of the frozen knobs dataclass with `changes` applied (JSON lists become tuples).

    Unknown names raise `ValueError`; value checks are the dataclass's own `__post_init__`.
    """
    names = {f.name for f in dataclasses.fields(knobs)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
    coerced: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    return dataclasses.replace(knobs, **coerced)


def check_rate(name: str, rate: object) -> None:
    """A probability knob: a number in [0, 1], or a mapping endpoint -> such a number."""
    values = rate.values() if isinstance(rate, Mapping) else [rate]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be within 0..1, got {value!r}")


def check_non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def check_latency(latency_ms: object) -> None:
    """`latency_ms` is one number or a `(min, max)` pair of milliseconds."""
    bounds = latency_ms if isinstance(latency_ms, tuple) else (latency_ms, latency_ms)
    if len(bounds) != 2:
        raise ValueError(f"latency_ms must be a number or (min, max), got {latency_ms!r}")
    for bound in bounds:
        check_non_negative("latency_ms", bound)
    if bounds[0] > bounds[1]:
        raise ValueError(f"latency_ms min > max: {latency_ms!r}")


def latency_s(rng: random.Random, latency_ms: float | tuple[float, float]) -> float:
    low, high = latency_ms if isinstance(latency_ms, tuple) else (latency_ms, latency_ms)
    return rng.uniform(low, high) / 1000


def rate_for(rate: float | Mapping[str, float], endpoint: str) -> float:
    """A per-endpoint rate: the endpoint's own entry, else `"*"`, else 0; a bare number is global."""
    if isinstance(rate, Mapping):
        return rate.get(endpoint, rate.get("*", 0.0))
    return rate


def roll(rng: random.Random, probability: float) -> bool:
    return probability > 0 and rng.random() < probability


def lose_answer(rng: random.Random, rate: float | Mapping[str, float], endpoint: str, request: httpx.Request) -> None:
    """With `lost_answer_rate` `rate` for `endpoint`, raise `httpx.ReadTimeout`: called after the
    request was processed, so the vendor acted (a task exists) and only the answer is lost. The ASGI
    adapter turns it into HTTP 502, like any injected transport failure. Draws nothing at rate 0."""
    if roll(rng, rate_for(rate, endpoint)):
        raise httpx.ReadTimeout("simulated lost answer: the request was processed", request=request)


# --- tasks -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimTask:
    """One task a simulator created, for tests looking for orphans and duplicates.

    `account` is the raw API key or SecretId the task belongs to (test-only; left out of `repr`).
    """

    task_id: str
    account: str = field(repr=False)
    created_at: float
    cancelled: bool


# --- call log --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One recorded request; credentials are masked and removed from `body`."""

    method: str
    path: str
    at: float
    api_key: str
    task_id: str | None = None
    body: Mapping[str, object] = field(default_factory=dict)


class CallLog:
    """An append-only, thread-safe list of `Call`s for assertions (`GET /__sim/calls`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def to_json(self) -> list[dict[str, object]]:
        return [dataclasses.asdict(call) for call in self.snapshot()]


# --- concurrency -----------------------------------------------------------------------------------


def max_overlap(intervals: Iterable[tuple[float, float | None]]) -> int:
    """The most half-open `[start, end)` intervals alive at one instant; `end=None` is still open.

    Computed from the intervals themselves, so it is exact however often anyone looked.
    """
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        if end is not None:
            events.append((end, -1))
    events.sort()  # at equal times -1 sorts first: an end and a start at t never overlap
    alive = best = 0
    for _, delta in events:
        alive += delta
        best = max(best, alive)
    return best


# --- requests --------------------------------------------------------------------------------------


def parse_body(request: httpx.Request) -> dict[str, object] | None:
    """The JSON object body, or the multipart form (files as bytes); None when unreadable."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return _parse_multipart(request.content, content_type)
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _parse_multipart(content: bytes, content_type: str) -> dict[str, object] | None:
    """A minimal form-data reader (fast on 30 MB bodies, unlike the stdlib `email` parser)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return None
    fields: dict[str, object] = {}
    for part in content.split(b"--" + boundary.group(1).encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name is not None:
            is_file = b"filename=" in head
            fields[name.group(1).decode()] = value if is_file else value.decode("utf-8", "replace")
    return fields


def bearer(request: httpx.Request) -> str:
    """The token of an `Authorization: Bearer ...` header, else ""."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def task_id_of(body: Mapping[str, object] | None, data: object) -> str | None:
    """The task a `{code, msg, data}` call names: the `taskId` it answered, else the one it asked about."""
    if isinstance(data, dict) and isinstance(data.get("taskId"), str):
        return str(data["taskId"])
    task_id = (body or {}).get("taskId")
    return None if task_id is None else str(task_id)


def scrub_body(body: Mapping[str, object], secret_fields: Iterable[str]) -> dict[str, object]:
    """A body fit for the call log: credential fields dropped, file contents shown as their size."""
    hidden = set(secret_fields)
    return {k: f"<{len(v)} bytes>" if isinstance(v, bytes) else v for k, v in body.items() if k not in hidden}


# --- responses -------------------------------------------------------------------------------------


def json_response(payload: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=payload)


@lru_cache(maxsize=512)
def png_bytes(label: str, size: int = 32) -> bytes:
    """A small valid PNG whose pixels and text chunk derive from `label`, so each label differs."""
    digest = hashlib.sha256(label.encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[:3]))
    draw = ImageDraw.Draw(image)
    for i in range(0, size, 4):
        draw.line([(i, 0), (0, i)], fill=tuple(digest[3:6]))
    info = PngInfo()
    info.add_text("label", label)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> range | None:
    """The bytes a `Range` header asks for: `None` = serve it all; an empty range = 416.

    One range only (`a-b`, `a-`, `-n`); a malformed or multi-range header is ignored, as RFC 9110
    allows.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        return range(max(size - suffix, 0), size) if suffix else range(0)
    start, stop = int(first), size if last == "" else int(last) + 1
    if start >= size:
        return range(0)
    return range(start, min(stop, size)) if start < stop else None


def file_response(request: httpx.Request, content: bytes, content_type: str) -> httpx.Response:
    """Serve `content`, honouring a single `Range: bytes=...` with 206 + `Content-Range`."""
    size = len(content)
    span = byte_range(request.headers.get("range"), size)
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    if span is None:
        return httpx.Response(200, headers=headers, content=content)
    if not span:
        return httpx.Response(416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {span.start}-{span.stop - 1}/{size}"
    return httpx.Response(206, headers=headers, content=content[span.start : span.stop])


# --- short-lived signed URLs -----------------------------------------------------------------------


def signed_url(origin: httpx.URL, path: str, *, expires: int, secret: bytes) -> str:
    """`{scheme}://{host}{path}?Expires=..&Signature=..`, shaped like a vendor's CDN link."""
    base = origin.copy_with(path=path, query=None, fragment=None)
    return str(base.copy_merge_params({"Expires": expires, "Signature": _sign(path, expires, secret)}))


def signature_ok(url: httpx.URL, *, now: float, secret: bytes) -> bool:
    """True when the URL's signature matches its path and expiry and it has not expired yet."""
    expires = url.params.get("Expires", "")
    if not expires.isdigit() or int(expires) < now:
        return False
    return hmac.compare_digest(url.params.get("Signature", ""), _sign(url.path, int(expires), secret))


def _sign(path: str, expires: int, secret: bytes) -> str:
    return hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


# --- the conveniences every simulator offers ---------------------------------------------------


class SimulatorBase(Generic[KnobsT]):
    """Knobs, call log, seeded randomness and the one lock, as tests and `/__sim/` routes see them.

    A mixin so each simulator keeps only what is its own: it calls `super().__init__(knobs)` first,
    overrides `_forget()` with the state `reset()` clears besides the call log, and `_configured()`
    when a knob change must reach other state. The lock is re-entrant: conveniences and vendor
    handlers call each other while holding it. `_serve` is the life of one vendor call.
    """

    def __init__(self, knobs: KnobsT, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.RLock()
        self._knobs = knobs
        self._clock = clock
        self._rng = random.Random(knobs.seed)
        self._log = CallLog()

    @property
    def knobs(self) -> KnobsT:
        return self._knobs

    @property
    def calls(self) -> list[Call]:
        return self._log.snapshot()

    def calls_json(self) -> list[dict[str, object]]:
        return self._log.to_json()

    def knobs_json(self) -> dict[str, object]:
        return dataclasses.asdict(self._knobs)

    def configure(self, **changes: object) -> KnobsT:
        """Change knobs at runtime: all checked before any is swapped in; a new `seed` re-seeds."""
        with self._lock:
            self._knobs = apply_knobs(self._knobs, changes)
            if "seed" in changes:
                self._rng.seed(self._knobs.seed)  # in place: whoever shares the source sees the new seed
            self._configured(changes)
            return self._knobs

    def reset(self) -> None:
        """Forget calls and whatever `_forget()` names; credentials and knobs stay."""
        with self._lock:
            self._forget()
            self._log.clear()

    def force(self, job_id: str, kind: str) -> bool:
        """Nothing to move, unless the simulator runs jobs."""
        return False

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        """No files, unless the simulator serves some."""
        return json_response({"error": "no files here"}, status=404)

    def _configured(self, changes: Mapping[str, object]) -> None:
        """Called under the lock after `changes` were applied; nothing else depends on knobs here."""

    def _forget(self) -> None:
        """Called under the lock by `reset()`; a simulator with state of its own clears it here."""

    def _draw_latency(self: SimulatorBase[ApiKnobsT]) -> float:
        with self._lock:
            return latency_s(self._rng, self._knobs.latency_ms)

    def _draw_failure(self, endpoint: str) -> bool:
        with self._lock:
            return roll(self._rng, rate_for(self._knobs.failure_rate, endpoint))

    def _failure(self, request: httpx.Request) -> httpx.Response:
        """The failure `failure_kind` names: no answer at all, a bare HTTP 500, or `_coded_failure`."""
        kind = self._knobs.failure_kind
        if kind == "transport":
            raise httpx.ConnectError("simulated connection reset", request=request)
        if kind == "http_500":
            return httpx.Response(500, text="Internal Server Error")
        return self._coded_failure(kind, request)

    def _coded_failure(self, kind: str, request: httpx.Request) -> httpx.Response:
        """The vendor's own answer for an injected `code_500`, `busy` or `rate` failure."""
        raise ValueError(f"{type(self).__name__} injects no {kind!r} failure")

    def _serve(
        self: SimulatorBase[ApiKnobsT],
        request: httpx.Request,
        body: Mapping[str, object] | None,
        answer: Callable[[], tuple[httpx.Response, str | None]],
        *,
        lost_answer_rate: float | Mapping[str, float] = 0.0,
    ) -> httpx.Response:
        """One vendor call: the latency, an injected failure (logged without a task), else `answer()`
        under the lock, logged with the task id it names; then, at `lost_answer_rate`, the answer is
        lost after the work was done."""
        path = request.url.path
        time.sleep(self._draw_latency())
        if self._draw_failure(path):
            self._log_call(request, body, None)
            return self._failure(request)
        with self._lock:
            response, task_id = answer()
            self._log_call(request, body, task_id)
            lose_answer(self._rng, lost_answer_rate, path, request)
        return response

    def _log_call(self, request: httpx.Request, body: Mapping[str, object] | None, task_id: str | None) -> None:
        """Log one vendor call, credentials masked (a simulator that `_serve`s says how)."""
        raise NotImplementedError

    def _signed_file(
        self,
        request: httpx.Request,
        task_id: str | None,
        find: Callable[[float], Callable[[], bytes] | None],
        *,
        secret: bytes,
        content_type: str,
    ) -> httpx.Response:
        """A result file behind a `signed_url`: the download is logged (no key: the URL is its own),
        `find(now)` names the task's file (None: 404); a signed URL must still be valid (a bare path
        is an admin peek). The file is made outside the lock."""
        with self._lock:
            now = self._clock()
            self._log.record(Call("GET", request.url.path, now, "", task_id))
            content = find(now)
        if content is None:
            return json_response({"error": "NoSuchKey"}, status=404)
        signed = "Signature" in request.url.params or "Expires" in request.url.params
        if signed and not signature_ok(request.url, now=now, secret=secret):
            return json_response({"error": "AccessDenied"}, status=403)
        return file_response(request, content(), content_type)


class Timeline(Protocol):
    """A task whose end `force_timeline` can move: it expires, or finishes with a fate."""

    expired_at: float
    done_at: float

    def finish(self, fate: str, now: float) -> None: ...


FORCED_FATE: Mapping[str, str] = {"complete": "success", "fail": "fail"}


def force_timeline(task: Timeline | None, kind: str, now: float) -> bool:
    """`POST /__sim/jobs/{id}/complete|fail|expire` on one task: False if unknown or not a kind."""
    if task is None or kind not in (*FORCED_FATE, "expire"):
        return False
    if kind == "expire":
        task.expired_at = now
        task.done_at = min(task.done_at, now)
    else:
        task.finish(FORCED_FATE[kind], now)
    return True


# --- admin surface (VENDORS.md §11.1) --------------------------------------------------------------


class SimAdmin(Protocol):
    """What a simulator offers the shared `/__sim/...` routes."""

    def knobs_json(self) -> dict[str, object]: ...
    def configure(self, **changes: object) -> object: ...
    def reset(self) -> None: ...
    def calls_json(self) -> list[dict[str, object]]: ...
    def stats(self) -> dict[str, object]: ...
    def force(self, job_id: str, kind: str) -> bool: ...
    def file(self, request: httpx.Request, name: str) -> httpx.Response: ...


_JOB_PATH = re.compile(r"/__sim/jobs/([^/]+)/(complete|fail|expire)")


def admin_response(sim: SimAdmin, request: httpx.Request) -> httpx.Response:
    """`GET|POST /__sim/config`, `POST /__sim/reset`, `GET /__sim/calls`, `GET /__sim/stats`,
    `POST /__sim/jobs/{id}/complete|fail|expire`, `GET /__sim/files/{name}`."""
    method, path = request.method, request.url.path
    route = _ADMIN_ROUTES.get((method, path))
    if route is not None:
        return route(sim, request)
    if method == "POST" and (job := _JOB_PATH.fullmatch(path)):
        found = sim.force(job.group(1), job.group(2))
        return json_response({"ok": found}, status=200 if found else 404)
    if method == "GET" and path.startswith("/__sim/files/"):
        return sim.file(request, path.removeprefix("/__sim/files/"))
    return json_response({"error": "no such admin route"}, status=404)


def _configure(sim: SimAdmin, request: httpx.Request) -> httpx.Response:
    """Apply a JSON object of knob changes; a bad name or value is a 400, knobs unchanged."""
    try:
        changes = json.loads(request.content or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        sim.configure(**changes)
    except (ValueError, TypeError) as exc:
        return json_response({"error": str(exc)}, status=400)
    return json_response(sim.knobs_json())


def _reset(sim: SimAdmin, _: httpx.Request) -> httpx.Response:
    sim.reset()
    return json_response({"ok": True})


_ADMIN_ROUTES: Mapping[tuple[str, str], Callable[[SimAdmin, httpx.Request], httpx.Response]] = {
    ("GET", "/__sim/config"): lambda sim, _: json_response(sim.knobs_json()),
    ("POST", "/__sim/config"): _configure,
    ("POST", "/__sim/reset"): _reset,
    ("GET", "/__sim/calls"): lambda sim, _: json_response(sim.calls_json()),
    ("GET", "/__sim/stats"): lambda sim, _: json_response(sim.stats()),
}


# --- ASGI adapter ----------------------------------------------------------------------------------


def asgi_app(handle: Handler) -> ASGIApp:
    """Serve a simulator's `handle` as an ASGI app (uvicorn on loopback).

    The request keeps the full URL incl. `Host`, so URLs the simulator builds point back at it.
    `handle` runs in a worker thread; an injected transport failure becomes HTTP 502.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = _to_request(scope, await _read_body(receive))
        response = await anyio.to_thread.run_sync(_answer, handle, request)
        start = {"type": "http.response.start", "status": response.status_code}
        await send({**start, "headers": list(response.headers.raw)})
        await send({"type": "http.response.body", "body": response.content})

    return app


def _answer(handle: Handler, request: httpx.Request) -> httpx.Response:
    try:
        response = handle(request)
    except httpx.TransportError:
        return httpx.Response(502, text="simulated transport failure")
    response.read()
    return response


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _to_request(scope: Scope, body: bytes) -> httpx.Request:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    host = next((v for k, v in headers if k.lower() == "host"), None)
    if host is None:
        server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server_host}:{server_port}"
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    url = httpx.URL(f"{scope.get('scheme', 'http')}://{host}{target}")
    return httpx.Request(scope["method"], url, headers=headers, content=body)
