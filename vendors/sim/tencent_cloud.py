"""Tencent Cloud API 3.0 simulator core (VENDORS.md §1, §11.2): signature checks, the envelope, and
dispatch on `X-TC-Action` to handlers that products register (ai3d now; SMS and STS later).

Every answer is HTTP 200 with exactly `Content-Type: application/json` and a `Response` carrying a
`RequestId` (errors in `Response.Error`), because the Python SDK only looks for errors then. The TC3
signature is recomputed from the RECEIVED `Host`, `Content-Type` and raw body (whatever headers the
caller listed in `SignedHeaders`), within ±300 s of the server clock (`clock_offset_s` moves it).

A product adds an action with `register(action, handler, service=..., version=...)`; the handler
gets a verified `ActionCall` under `lock` and returns the response fields, or raises
`TencentCloudError(code, message)` to answer `Response.Error`. A product's simulator is a
`TencentProduct`: its own knobs beside the core's, and the core's lock, clock and call log.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Generic, TypeVar

import httpx

from vendors.sim.common import (
    ApiKnobs,
    Call,
    SimulatorBase,
    admin_response,
    apply_knobs,
    check_rate,
    json_response,
    lose_answer,
    mask_key,
)
from vendors.tencent_cloud import Tc3Authorization, parse_authorization, sign_tc3, utc_date

WINDOW_S: Final = 300
_INJECTED: Final[Mapping[str, str]] = {
    "InternalError": "内部错误。",
    "RequestLimitExceeded": "请求的次数超过了频率限制。",
}
_LOGGED_STRING_MAX: Final = 256


class TencentCloudError(Exception):
    """Raised by a handler (or the core): answered as `Response.Error` with HTTP 200."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ActionCall:
    """A verified call: the signature, window, SecretId, action and version all checked."""

    http: httpx.Request
    action: str
    secret_id: str
    region: str
    params: Mapping[str, object]
    now: float


ActionHandler = Callable[[ActionCall], Mapping[str, object]]


@dataclass(frozen=True)
class _Action:
    handler: ActionHandler
    service: str
    version: str
    regional: bool


@dataclass(frozen=True)
class TencentCloudKnobs(ApiKnobs):
    """Switches of the API layer itself (`failure_rate` by action); products keep their own knobs
    next to these. `transport` fails before the action runs."""

    failure_kinds: ClassVar[frozenset[str]] = frozenset({"transport", "InternalError", "RequestLimitExceeded"})
    failure_kind: str = "InternalError"
    lost_answer_rate: float | Mapping[str, float] = 0.0  # the action runs, then httpx.ReadTimeout; by action
    clock_offset_s: float = 0.0  # the server clock minus ours, for the ±300 s signature window

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rate("lost_answer_rate", self.lost_answer_rate)
        if isinstance(self.clock_offset_s, bool) or not isinstance(self.clock_offset_s, int | float):
            raise ValueError(f"clock_offset_s must be a number, got {self.clock_offset_s!r}")


class TencentCloudSim(SimulatorBase[TencentCloudKnobs]):
    """The API 3.0 front door; see the module docstring. `lock` guards it and every product on it."""

    def __init__(
        self, *, credentials: Mapping[str, str], clock: Callable[[], float] = time.time, seed: int | None = None
    ) -> None:
        super().__init__(TencentCloudKnobs(seed=seed), clock)
        self._credentials = dict(credentials)  # SecretId -> SecretKey
        self._actions: dict[str, _Action] = {}

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def rng(self) -> random.Random:
        return self._rng

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def register(
        self, action: str, handler: ActionHandler, *, service: str, version: str, regional: bool = True
    ) -> None:
        """Answer `action` of `service`/`version` with `handler`; `regional` requires `X-TC-Region`."""
        with self.lock:
            self._actions[action] = _Action(handler, service, version, regional)

    # --- the call log (knobs, calls and reset come from SimulatorBase) -----------------------------

    def record(self, call: Call) -> None:
        self._log.record(call)

    def secret_ids(self) -> list[str]:
        return sorted(self._credentials)

    # --- HTTP entry point ------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one API call (latency, injected failure, verification, dispatch, envelope)."""
        time.sleep(self._draw_latency())
        action = request.headers.get("x-tc-action", "")
        with self.lock:
            call: ActionCall | None = None
            try:
                call = self._verify(request, action)
                self._inject_failure(request, call)
                fields = self._actions[action].handler(call)
            except TencentCloudError as exc:
                self._record(request, action, call.params if call else None, {"Error": {"Code": exc.code}})
                fields = {"Error": {"Code": exc.code, "Message": exc.message}}
            else:
                self._record(request, action, call.params, fields)
            lose_answer(self._rng, self._knobs.lost_answer_rate, action, request)
            return self._answer(fields)

    def _verify(self, request: httpx.Request, action: str) -> ActionCall:
        """The checks a real endpoint makes, in order; each failure is its documented code."""
        if request.method != "POST" or request.url.path != "/":
            raise TencentCloudError("InvalidRequest", "the simulator takes POST / with a JSON body")
        auth = parse_authorization(request.headers.get("authorization", ""))
        if auth is None:
            raise TencentCloudError("AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256.")
        timestamp = _timestamp(request)
        secret_key = self._credentials.get(auth.secret_id)
        if secret_key is None:
            raise TencentCloudError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        server_now = self.clock() + self._knobs.clock_offset_s
        if abs(timestamp - server_now) > WINDOW_S:
            raise TencentCloudError(
                "AuthFailure.SignatureExpire",
                f"Signature expired, timestamp {timestamp} and server time {int(server_now)} differ by more "
                f"than {WINDOW_S} s.",
            )
        if not _signature_ok(request, auth, timestamp, secret_key):
            raise TencentCloudError("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        return self._action_call(request, action, auth.secret_id, auth.service)

    def _action_call(self, request: httpx.Request, action: str, secret_id: str, service: str) -> ActionCall:
        spec = self._actions.get(action)
        if spec is None:
            raise TencentCloudError("InvalidAction", f"The action `{action}` is not found.")
        if spec.service != service:
            raise TencentCloudError("AuthFailure.SignatureFailure", f"credential scope service is not {spec.service}")
        if request.headers.get("x-tc-version") != spec.version:
            raise TencentCloudError("NoSuchVersion", f"The version of `{action}` must be {spec.version}.")
        region = request.headers.get("x-tc-region", "")
        if spec.regional and not region:
            raise TencentCloudError("MissingParameter", "The parameter `Region` is missing.")
        params = _json_object(request)
        return ActionCall(request, action, secret_id, region, params, self.clock())

    def _inject_failure(self, request: httpx.Request, call: ActionCall) -> None:
        if not self._draw_failure(call.action):
            return
        if self._knobs.failure_kind == "transport":
            self._record(request, call.action, call.params, {"Error": {"Code": "transport"}})
        self._failure(request)

    def _coded_failure(self, kind: str, request: httpx.Request) -> httpx.Response:
        raise TencentCloudError(kind, _INJECTED[kind])

    def _answer(self, fields: Mapping[str, object]) -> httpx.Response:
        request_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        body = json.dumps({"Response": {**fields, "RequestId": request_id}}, ensure_ascii=False).encode()
        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=body)

    def _record(
        self, request: httpx.Request, action: str, params: Mapping[str, object] | None, fields: Mapping[str, object]
    ) -> None:
        """Log the call: SecretId masked, no Authorization, long strings (base64) shown by length."""
        auth = parse_authorization(request.headers.get("authorization", ""))
        job_id = fields.get("JobId", (params or {}).get("JobId"))
        body: dict[str, object] = {"Action": action, **{k: _loggable(v) for k, v in (params or {}).items()}}
        if "Error" in fields:
            body["Error"] = fields["Error"]
        secret_id = mask_key(auth.secret_id) if auth else ""
        self._log.record(Call(request.method, request.url.path, self.clock(), secret_id, _opt_str(job_id), body))


# --- verification helpers ---------------------------------------------------------------------------


def _timestamp(request: httpx.Request) -> int:
    value = request.headers.get("x-tc-timestamp", "")
    if not value:
        raise TencentCloudError("MissingParameter", "The parameter `X-TC-Timestamp` is missing.")
    if not value.isdigit():
        raise TencentCloudError("InvalidParameter", "The parameter `X-TC-Timestamp` is not a Unix time.")
    return int(value)


def _signature_ok(request: httpx.Request, auth: Tc3Authorization, timestamp: int, secret_key: str) -> bool:
    """Recompute from the headers as received; content-type and host must be among the signed ones."""
    signed = auth.signed_headers
    if not {"content-type", "host"} <= set(signed) or any(name not in request.headers for name in signed):
        return False
    if auth.date != utc_date(timestamp):
        return False
    expected = sign_tc3(
        secret_id=auth.secret_id,
        secret_key=secret_key,
        service=auth.service,
        timestamp=timestamp,
        headers={name: request.headers[name] for name in signed},
        payload=request.content,
        method=request.method,
        query=request.url.query.decode(),
    )
    return hmac.compare_digest(expected.rsplit("Signature=", 1)[1], auth.signature)


def _json_object(request: httpx.Request) -> dict[str, object]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise TencentCloudError("InvalidParameter", "Content-Type must be application/json.")
    try:
        params = json.loads(request.content or b"{}")
    except ValueError:
        params = None
    if not isinstance(params, dict):
        raise TencentCloudError("InvalidParameter", "The request body is not a JSON object.")
    return params


def _loggable(value: object) -> object:
    """Params fit for the call log: strings longer than 256 characters (base64 images) as their size."""
    if isinstance(value, str) and len(value) > _LOGGED_STRING_MAX:
        return f"<{len(value)} chars>"
    if isinstance(value, Mapping):
        return {str(k): _loggable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_loggable(v) for v in value]
    return value


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def knob_names() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(TencentCloudKnobs))


# --- a product on the core ----------------------------------------------------------------------------

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PK = TypeVar("PK", bound="DataclassInstance")


class TencentProduct(Generic[PK]):
    """A product's simulator (ai3d, SMS) on a `TencentCloudSim` (`core`): knobs of its own beside the
    core's, one `configure` for both, and the core's lock and call log. `/__sim/...` is its admin
    surface; every other request is an API 3.0 call. A product registers its actions on `core`."""

    def __init__(self, core: TencentCloudSim, knobs: PK) -> None:
        self.core = core
        self._knobs = knobs

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/__sim/"):
            return admin_response(self, request)
        return self.core.handle(request)

    @property
    def knobs(self) -> PK:
        return self._knobs

    @property
    def calls(self) -> list[Call]:
        return self.core.calls

    def calls_json(self) -> list[dict[str, object]]:
        return [dataclasses.asdict(call) for call in self.calls]

    def knobs_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self.core.knobs), **dataclasses.asdict(self._knobs)}

    def configure(self, **changes: object) -> tuple[TencentCloudKnobs, PK]:
        """Change core and product knobs together; nothing changes when any name or value is bad."""
        core_names = knob_names()
        with self.core.lock:
            own = apply_knobs(self._knobs, {k: v for k, v in changes.items() if k not in core_names})
            core = self.core.configure(**{k: v for k, v in changes.items() if k in core_names})
            self._knobs = own
            return core, own

    def reset(self) -> None:
        """Forget calls and what `_forget()` names; credentials and knobs stay."""
        with self.core.lock:
            self._forget()
            self.core.reset()

    def stats(self) -> dict[str, object]:
        raise NotImplementedError

    def force(self, job_id: str, kind: str) -> bool:
        """Nothing to move, unless the product runs jobs."""
        return False

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        return json_response({"error": "no files here"}, status=404)

    def _forget(self) -> None:
        """Called under the lock by `reset()`: the product's own state."""
