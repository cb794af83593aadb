"""Small helpers the tests share (not fixtures): waiting on the database, making users."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import dramatiq
import httpx
from dramatiq.middleware import Middleware
from sqlalchemy import update

from domain.jobs import Job
from genq.simulators import private_pem, public_pem
from infra.accounts import NewUser
from infra.db import users
from infra.embedded import free_port
from infra.resources import Resources
from infra.settings import Secret, Settings
from vendors.sim.alipay import AlipaySim
from vendors.sim.wechatpay import WechatPaySim

T = TypeVar("T")

# Input images come from a loopback stand-in for the web (vendors/sim/samples.py), started for the
# session by tests/conftest.py on this port and allow-listed in the settings.
SAMPLES_PORT = free_port()
SAMPLES = f"http://127.0.0.1:{SAMPLES_PORT}/samples"
GARMENT = f"{SAMPLES}/garment.png"
POSE12_INPUT = {"image_url": GARMENT, "scene": "street", "category": "dress"}
# Webhook receivers listen here (HookReceiver), also allow-listed.
HOOKS_PORT = free_port()
# The simulators' outputs (photos, videos, 3D models) at a tenth of the vendors' size and length:
# real files, made in milliseconds. Tests of the full sizes set `media_scale` 1 themselves.
SIM_MEDIA_SCALE = 0.1


@dataclass(frozen=True)
class SimTimes:
    """How long a vendor simulator's task takes (the `sim_times` fixture)."""

    queued_s: float  # before it runs (KIE: waiting, then queuing, each this long)
    running_s: float  # its run


def settings_for_tests(env: Settings, *, var_dir: Path, redis_url: str, s3_url: str) -> Settings:
    """Settings for in-process tests: fast clocks, no waits between retries, every vendor and
    platform pointed at a simulator's host (served in-process through httpx.MockTransport)."""
    return env.with_(
        var_dir=var_dir,
        redis_url=redis_url,
        s3_endpoint_url=s3_url,
        s3_bucket=f"genq-test-{uuid.uuid4().hex[:8]}",
        runninghub_base_url="http://runninghub.sim",
        runninghub_api_key=Secret("test-rh-key-" + uuid.uuid4().hex[:20]),
        hunyuan3d_base_url="http://hunyuan3d.sim",
        ci_bucket_url="http://genq-ci-1250000000.cos.sim",
        tencent_secret_id="AKIDtest" + uuid.uuid4().hex[:24],
        tencent_secret_key=Secret(uuid.uuid4().hex),
        kie_base_url="http://kie.sim",
        kie_api_key=Secret("kie-" + uuid.uuid4().hex),
        kie_webhook_hmac_key=Secret("hmac-" + uuid.uuid4().hex),
        kie_callback_url="http://testserver.local/v1/callbacks/kie",
        wechat_base_url="http://wechat.sim",
        wechat_appid="wx" + uuid.uuid4().hex[:16],
        wechat_secret=Secret(uuid.uuid4().hex),
        wechat_openid="o" + uuid.uuid4().hex[:27],
        wechat_push_token=Secret("push-" + uuid.uuid4().hex),
        douyin_base_url="http://douyin.sim",
        douyin_appid="tt" + uuid.uuid4().hex[:16],
        douyin_secret=Secret(uuid.uuid4().hex),
        jwt_secret=Secret("jwt-" + uuid.uuid4().hex + uuid.uuid4().hex),
        sms_base_url="http://sms.sim",
        sms_sdk_app_id="1400" + str(uuid.uuid4().int)[:6],
        sms_sign_name="genq",
        sms_template_id="1000001",
        fetch_allowlist=f"127.0.0.1:{SAMPLES_PORT},127.0.0.1:{HOOKS_PORT}",
        retry_waits_s="0,0,0",
        webhook_retry_waits_s="0",
        webhook_timeout_s=5.0,
        vendor_busy_pause_s=0.05,
        poll_schedule_image="0:0.05",
        poll_schedule_video_720p="0:0.05",
        poll_schedule_video_1080p="0:0.05",
        poll_schedule_3d="0:0.05",
        reconcile_interval_s=0.2,
        log_format="json",
    )


def wait_for(probe: Callable[[], T | None], *, timeout_s: float = 20.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def terminal_job(resources: Resources, job_id: str, *, timeout_s: float = 20.0) -> Job:
    def probe() -> Job | None:
        job = resources.jobs.get(job_id)
        return job if job is not None and job.terminal else None

    return wait_for(probe, timeout_s=timeout_s, what=f"job {job_id} to finish")


def make_user(resources: Resources, credits: int, phone: str = "13800000000", *, plan: str | None = None) -> NewUser:
    """A user with an API key and `credits`; with `plan`, a member of it for 30 days (its in-flight
    cap and fair-share weight follow the plan's concurrency; without one a user is on "free": 1)."""
    user = resources.accounts.create_user(phone, credits, now=datetime.now(UTC))
    if plan is not None:
        with resources.engine.begin() as conn:
            until = datetime.now(UTC) + timedelta(days=30)
            conn.execute(update(users).where(users.c.id == user.user_id).values(plan=plan, member_until=until))
    return user


def auth(user: NewUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.api_key}"}


def pose12_body(**changes: Any) -> dict[str, Any]:
    return {"kind": "model_pose12", "input": {**POSE12_INPUT, **changes}}


class HeldCall:
    """A transport in front of `handle` that holds the first request `matches` picks until
    `release()`: a vendor slow to answer one call. `started` is set once that call has arrived."""

    def __init__(self, handle: Callable[[httpx.Request], httpx.Response], matches: Callable[[str], bool]) -> None:
        self.started, self._released = threading.Event(), threading.Event()
        self._handle, self._matches = handle, matches
        self.transport = httpx.MockTransport(self._serve)

    def release(self) -> None:
        self._released.set()

    def _serve(self, request: httpx.Request) -> httpx.Response:
        if self._matches(request.url.path) and not self.started.is_set():
            self.started.set()
            self._released.wait(30)
        return self._handle(request)


class Traffic(Middleware):
    """Every message a broker was given, and which a worker has finished: a test waits for the
    messages it caused to be handled (not for time to pass), or sends one again (a duplicate)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[tuple[dramatiq.Message[Any], int | None]] = []
        self._finished: set[str] = set()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        with self._lock:
            self.messages.append((message, delay))

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], *, result: Any = None, exception: Any = None
    ) -> None:
        with self._lock:
            self._finished.add(message.message_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        self.after_process_message(broker, message)

    def of(self, actor_name: str) -> list[dramatiq.Message[Any]]:
        with self._lock:
            return [m for m, _ in self.messages if m.actor_name == actor_name]

    def handled(self, actor_name: str) -> bool:
        """Whether every message to `actor_name` sent without a delay has been handled."""
        with self._lock:
            due = {m.message_id for m, delay in self.messages if m.actor_name == actor_name and not delay}
            return due <= self._finished


@dataclass(frozen=True)
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class HookReceiver:
    """A webhook subscriber: records every POST; `fail(path, n, status)` makes the next `n` POSTs to
    `path` answer `status` (500 by default), then 204. `start()` serves it on loopback; the fast
    tier mounts `handle` with httpx.MockTransport instead (no server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._received: list[Hook] = []
        self._failures: dict[str, list[int]] = {}
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, path: str, times: int, status: int = 500) -> None:
        with self._lock:
            self._failures[path] = [status] * times

    def received(self, path: str | None = None) -> list[Hook]:
        with self._lock:
            return [h for h in self._received if path is None or h.path == path]

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._failures.clear()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """Record one POST; the status it is answered."""
        with self._lock:
            pending = self._failures.get(path, [])
            status = pending.pop(0) if pending else 204
            self._received.append(Hook(path, headers, body, status))
        return status

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The receiver in-process (httpx.MockTransport)."""
        path = request.url.raw_path.decode()
        return httpx.Response(self.answer(path, dict(request.headers.items()), request.read()))

    def start(self) -> HookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver.answer(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="hooks", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def with_payments(settings: Settings, wechat: WechatPaySim, ali: AlipaySim, *, serial: str | None = None) -> Settings:
    """`settings` with WeChat Pay and Alipay pointed at these simulators (at http://wechatpay.sim and
    http://alipay.sim: serve them with `payment_transport`); `serial` names the platform key's id."""
    return settings.with_(
        public_base_url="http://testserver.local",
        wechatpay_base_url="http://wechatpay.sim",
        wechatpay_mchid=wechat.mchid,
        wechatpay_appid=wechat.appid,
        wechatpay_serial_no=wechat.merchant_serial,
        wechatpay_private_key=Secret(private_pem(wechat.merchant_private_key)),
        wechatpay_public_key=public_pem(wechat.public_key),
        wechatpay_public_key_id=serial or wechat.serial,
        wechatpay_api_v3_key=Secret(wechat.api_v3_key),
        alipay_base_url="http://alipay.sim",
        alipay_app_id=ali.app_id,
        alipay_private_key=Secret(private_pem(ali.app_private_key)),
        alipay_public_key=public_pem(ali.alipay_public_key),
    )


def payment_transport(wechat: WechatPaySim, ali: AlipaySim) -> httpx.MockTransport:
    by_host = {"wechatpay.sim": wechat.handle, "alipay.sim": ali.handle}
    return httpx.MockTransport(lambda request: by_host[request.url.host](request))
