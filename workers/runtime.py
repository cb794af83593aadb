"""What every actor run needs, built once per process at boot and installed here.

The actor decorator (workers.broker) hands the installed runtime to each run; helpers take it as
an argument. Tests build a Runtime of their own (real database, real Redis, simulators behind
httpx.MockTransport, zero retry waits) and install it; nothing is patched.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import httpx
import tenacity

from domain import scheduling
from domain.jobs import Job
from domain.scheduling import PollSchedule
from infra import catalog, metrics
from infra.accounts import Accounts
from infra.audits import AuditStore
from infra.config_store import ConfigStore
from infra.jobstore import JobStore
from infra.login import LoginCodes
from infra.orders import Membership
from infra.rooms import Rooms
from infra.settings import Settings
from infra.storage import Storage, StorageMeter
from infra.webhooks import WebhookStore
from vendors.base import GenerationVendor, VendorError, VendorRejected, VendorUnavailable
from vendors.moderation import ModerationPlatform
from vendors.tencent_sms import SmsClient

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """The scheduling numbers of the moment: settings with an admin's live overrides applied.

    The rules themselves are in `domain.scheduling`; this only reads their inputs.
    """

    settings: Settings
    config: ConfigStore | None = None  # admin overrides, applied to the next job without a restart

    @property
    def current(self) -> Settings:
        return self.config.effective(self.settings) if self.config is not None else self.settings

    @property
    def retry_waits_s(self) -> tuple[float, ...]:
        return self.settings.retry_waits

    def model_limit(self, room: str) -> int:
        return catalog.slot_limits(self.current).get(room, 1)

    def rooms(self) -> list[str]:
        return list(catalog.slot_limits(self.current))

    def schedule_for(self, job: Job) -> PollSchedule:
        return catalog.poll_schedule(self.current, job.kind, job.input)

    def poll_delay_ms(self, job: Job, now: datetime) -> int:
        since = job.processing_at or job.created_at
        return int(self.schedule_for(job).interval((now - since).total_seconds()) * 1000)

    @classmethod
    def from_settings(cls, settings: Settings, config: ConfigStore | None = None) -> Policy:
        return cls(settings, config)


@dataclass
class Runtime:
    settings: Settings
    jobs: JobStore
    accounts: Accounts
    rooms: Rooms
    storage: Storage
    vendors: Mapping[str, GenerationVendor]
    downloads: httpx.Client  # fetches vendor outputs; no base URL
    policy: Policy
    audits: AuditStore
    moderation: Mapping[str, ModerationPlatform]
    membership: Membership
    webhooks: WebhookStore
    webhook_http: httpx.Client  # POSTs webhooks; no base URL, no redirects followed
    login: LoginCodes | None = None
    sms: SmsClient | None = None
    meter: StorageMeter | None = None  # bytes of published results (None: not counted)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)

    def now(self) -> datetime:
        return self.clock()

    def vendor(self, job: Job) -> GenerationVendor:
        try:
            return self.vendors[job.vendor]
        except KeyError:
            raise VendorRejected(job.vendor, "vendor_not_configured", "set the vendor's credentials") from None

    def moderation_platform(self, name: str) -> ModerationPlatform:
        try:
            return self.moderation[name]
        except KeyError:
            raise VendorRejected(name, "not_configured", "set the moderation platform's credentials") from None

    def retrying(self, vendor: str, endpoint: str, call: Callable[[], T]) -> T:
        """Run a vendor call, retrying transient failures after each of `retry_waits_s`.

        Every attempt is counted in genq_vendor_calls_total by its outcome bucket.
        """
        waits = self.policy.retry_waits_s

        def attempt() -> T:
            started = time.monotonic()
            try:
                result = call()
            except VendorError as exc:
                outcome = type(exc).__name__
                metrics.VENDOR_CALLS.labels(vendor, endpoint, outcome).inc()
                metrics.VENDOR_CALL_LATENCY.labels(vendor, endpoint, outcome).observe(time.monotonic() - started)
                raise
            metrics.VENDOR_CALLS.labels(vendor, endpoint, "ok").inc()
            metrics.VENDOR_CALL_LATENCY.labels(vendor, endpoint, "ok").observe(time.monotonic() - started)
            return result

        retryer = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(VendorUnavailable),
            stop=tenacity.stop_after_attempt(len(waits) + 1),
            wait=lambda state: scheduling.retry_wait(state.attempt_number, waits) or 0.0,
            reraise=True,
        )
        return retryer(attempt)


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no runtime installed: boot the process through genq (workers.boot)")
    return _current
