"""Starting a worker pool process: `genq worker QUEUE...` ends up here.

One process serves the queues it is given with `threads` worker threads; scale a pool by running
more processes of its Procfile line. The `maintenance` queue also runs the reconciler loop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence

import dramatiq
import httpx
import structlog

import workers.actors  # noqa: F401 - declares every actor, so install() binds them all
from infra import logging as genq_logging
from infra.jobstore import JobStore
from infra.lifetime import exit_with_parent
from infra.netguard import Allowlist, GuardTransport, NetGuard, Resolver, system_resolver
from infra.resources import Resources, redis_url
from infra.settings import Settings
from infra.tokens import RedisTokenCache
from vendors.base import GenerationVendor
from vendors.douyin_sec import DouyinModeration
from vendors.hunyuan3d import Hunyuan3DClient
from vendors.kie import KieClient
from vendors.moderation import ModerationPlatform, TokenCache
from vendors.runninghub import RunningHubClient
from vendors.tencent_ci import TencentCiClient
from vendors.tencent_sms import SmsClient
from vendors.wechat_sec import WechatModeration
from workers import broker, maintenance, messages, metrics_server, runtime

log = structlog.get_logger()
IDLE_FETCH_MS = 100


def vendor_clients(
    settings: Settings, jobs: JobStore, *, transport: httpx.BaseTransport | None = None
) -> dict[str, GenerationVendor]:
    """One client per vendor; a vendor whose credentials are unset is left out (its jobs fail).

    `transport` is for tests: the simulators in-process instead of the network.
    """
    timeout = httpx.Timeout(settings.vendor_timeout_s, connect=5.0)

    def http(base_url: str) -> httpx.Client:
        return httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    clients: dict[str, GenerationVendor] = {}
    if settings.runninghub_api_key:
        clients["runninghub"] = RunningHubClient(
            http(settings.runninghub_base_url), api_key=settings.runninghub_api_key.reveal()
        )
    if settings.kie_api_key:
        clients["kie"] = KieClient(
            http(settings.kie_base_url),
            api_key=settings.kie_api_key.reveal(),
            callback_url=settings.kie_callback_url or None,
        )
    secret_id, secret_key = settings.tencent_secret_id, settings.tencent_secret_key.reveal()
    if secret_id and secret_key:
        clients["hunyuan3d"] = Hunyuan3DClient(
            http(settings.hunyuan3d_base_url),
            secret_id=secret_id,
            secret_key=secret_key,
            region=settings.hunyuan3d_region,
        )
        clients["tencent_ci"] = TencentCiClient(
            bucket_url=settings.ci_bucket_url,
            secret_id=secret_id,
            secret_key=secret_key,
            inputs=lambda job_id: _input_url(jobs, job_id),
        )
    return clients


def moderation_platforms(
    settings: Settings, tokens: TokenCache, *, transport: httpx.BaseTransport | None = None
) -> dict[str, ModerationPlatform]:
    """One adapter per moderation platform whose credentials are set."""
    timeout = httpx.Timeout(settings.vendor_timeout_s, connect=5.0)
    platforms: dict[str, ModerationPlatform] = {}
    if settings.wechat_appid and settings.wechat_secret and settings.wechat_openid and settings.wechat_push_token:
        platforms["wechat"] = WechatModeration(
            httpx.Client(base_url=settings.wechat_base_url, timeout=timeout, transport=transport),
            appid=settings.wechat_appid,
            secret=settings.wechat_secret.reveal(),
            openid=settings.wechat_openid,
            push_token=settings.wechat_push_token.reveal(),
            tokens=tokens,
        )
    if settings.douyin_appid and settings.douyin_secret:
        platforms["douyin"] = DouyinModeration(
            httpx.Client(base_url=settings.douyin_base_url, timeout=timeout, transport=transport),
            appid=settings.douyin_appid,
            secret=settings.douyin_secret.reveal(),
            tokens=tokens,
        )
    return platforms


def _input_url(jobs: JobStore, job_id: str) -> str | None:
    job = jobs.get(job_id)
    return None if job is None else job.input.get("image_url")


def build_runtime(resources: Resources) -> runtime.Runtime:
    settings = resources.settings
    return runtime.Runtime(
        settings=settings,
        jobs=resources.jobs,
        accounts=resources.accounts,
        rooms=resources.rooms,
        storage=resources.storage,
        vendors=vendor_clients(settings, resources.jobs),
        downloads=download_client(settings),
        policy=runtime.Policy.from_settings(settings, resources.config),
        audits=resources.audits,
        moderation=moderation_platforms(settings, RedisTokenCache(resources.redis)),
        membership=resources.membership,
        webhooks=resources.webhooks,
        webhook_http=webhook_client(settings),
        login=resources.login,
        sms=sms_client(settings),
        meter=resources.meter,
    )


def webhook_client(
    settings: Settings, *, transport: httpx.BaseTransport | None = None, resolver: Resolver = system_resolver
) -> httpx.Client:
    """Posts to subscribers' URLs, checked and pinned (FETCH_ALLOWLIST applies); no redirects.

    `transport` and `resolver` are for tests: what sends the pinned request, and what the name resolves to.
    """
    guard = NetGuard(Allowlist.parse(settings.fetch_allowlist), what="webhook targets", resolve=resolver)
    return httpx.Client(
        timeout=settings.webhook_timeout_s, follow_redirects=False, transport=GuardTransport(guard, transport)
    )


def download_client(
    settings: Settings, *, transport: httpx.BaseTransport | None = None, resolver: Resolver = system_resolver
) -> httpx.Client:
    """Fetches vendor outputs: every redirect hop checked and pinned like an input image. A vendor's
    own API host (its configured base URL) is trusted as its API is: `genq run`'s simulators serve
    their outputs from loopback."""
    allow = Allowlist.parse(settings.fetch_allowlist)
    vendor_hosts = {_endpoint(url) for url in _vendor_base_urls(settings) if url}
    guard = NetGuard(Allowlist(allow.networks, allow.endpoints | vendor_hosts), what="vendor outputs", resolve=resolver)
    timeout = httpx.Timeout(settings.vendor_timeout_s, connect=5.0)
    return httpx.Client(timeout=timeout, follow_redirects=True, transport=GuardTransport(guard, transport))


def _vendor_base_urls(settings: Settings) -> tuple[str, ...]:
    return (settings.runninghub_base_url, settings.hunyuan3d_base_url, settings.kie_base_url, settings.ci_bucket_url)


def _endpoint(url: str) -> tuple[str, int]:
    parsed = httpx.URL(url)
    return parsed.raw_host.decode("ascii").lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


def sms_client(settings: Settings, *, transport: httpx.BaseTransport | None = None) -> SmsClient | None:
    if not (settings.tencent_secret_id and settings.tencent_secret_key and settings.sms_sdk_app_id):
        return None
    return SmsClient(
        httpx.Client(base_url=settings.sms_base_url, timeout=httpx.Timeout(10.0), transport=transport),
        secret_id=settings.tencent_secret_id,
        secret_key=settings.tencent_secret_key.reveal(),
        sdk_app_id=settings.sms_sdk_app_id,
        sign_name=settings.sms_sign_name,
        template_id=settings.sms_template_id,
    )


def run(settings: Settings, queues: Sequence[str], *, threads: int, stop: threading.Event | None = None) -> None:
    unknown = set(queues) - set(broker.QUEUES)
    if unknown:
        raise SystemExit(f"unknown queue(s): {', '.join(sorted(unknown))}; known: {', '.join(broker.QUEUES)}")
    genq_logging.configure(settings)
    stop = stop or _stop_on_signals()
    exit_with_parent(settings.supervisor_pid)
    resources = Resources.open(settings)
    resources.jobs.announce_with(messages.webhooks)
    runtime.install(build_runtime(resources))
    if "archiving" in queues:
        resources.storage.ensure_bucket()
    the_broker = broker.install(broker.redis_broker(redis_url(settings)))
    exporter = metrics_server.start(settings)  # GET /metrics on WORKER_METRICS_PORT (None: 0); a bad port fails here
    # An idle consumer looks for new messages every 100 ms (Dramatiq's default is 1 s): a released
    # slot's submit, and each due poll, start within that.
    worker = dramatiq.Worker(the_broker, queues=set(queues), worker_threads=threads, worker_timeout=IDLE_FETCH_MS)
    worker.start()
    from workers import health  # the heartbeat file the pool's probes read (`genq worker-health`)

    health.start(stop, settings, queues, worker, resources)
    loops = []
    if "maintenance" in queues:
        loop = threading.Thread(
            target=maintenance.run_periodically, args=(stop, resources.redis), name="reconciler", daemon=True
        )
        loop.start()
        loops.append(loop)
    log.info("worker_started", queues=list(queues), threads=threads)
    stop.wait()
    log.info("worker_stopping")
    worker.stop(timeout=10_000)
    if exporter is not None:
        exporter.close()
    for loop in loops:
        loop.join(5)
    the_broker.close()
    resources.close()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
