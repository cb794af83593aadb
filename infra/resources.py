"""The connections a genq process holds: database, Redis, object storage. Built once at boot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import redis
from redis import Redis
from sqlalchemy import Engine, text

from infra.accounts import Accounts
from infra.audits import AuditStore
from infra.batches import BatchStore
from infra.config_store import ConfigStore
from infra.db import make_engine
from infra.images import Allowlist, ImageInspector
from infra.jobstore import JobStore
from infra.keycache import KeyCache
from infra.login import LoginCodes, Tokens
from infra.orders import Membership
from infra.ratelimit import RateLimiter
from infra.rooms import Rooms
from infra.settings import Settings
from infra.storage import Storage, StorageMeter, make_s3_client
from infra.webhooks import WebhookStore


def redis_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded server that `genq run` starts when it is unset."""
    return settings.redis_url or f"redis://127.0.0.1:{settings.embedded_redis_port}/0"


def s3_endpoint(settings: Settings) -> str:
    """S3_ENDPOINT_URL, or the embedded server that `genq run` starts when it is unset."""
    return settings.s3_endpoint_url or f"http://127.0.0.1:{settings.embedded_s3_port}"


@dataclass
class Resources:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    jobs: JobStore
    accounts: Accounts
    key_cache: KeyCache  # API keys looked up in this process, kept key_cache_ttl_s
    rooms: Rooms
    storage: Storage
    meter: StorageMeter  # bytes of published results, in Redis
    images: ImageInspector
    audits: AuditStore
    rate: RateLimiter
    membership: Membership
    config: ConfigStore  # admin overrides of prices, plans, limits, polling: read through effective()
    webhooks: WebhookStore
    batches: BatchStore
    login: LoginCodes | None  # None until JWT_SECRET is set: phone login is off
    tokens: Tokens | None

    @classmethod
    def open(cls, settings: Settings) -> Resources:
        client = redis.Redis.from_url(redis_url(settings), socket_timeout=10, socket_connect_timeout=5)
        return cls.over(
            settings,
            engine=make_engine(settings),
            redis_client=client,
            s3=make_s3_client(settings, s3_endpoint(settings)),
            images=ImageInspector(
                httpx.Client(timeout=settings.fetch_timeout_s), Allowlist.parse(settings.fetch_allowlist)
            ),
        )

    @classmethod
    def over(
        cls, settings: Settings, *, engine: Engine, redis_client: Redis, s3: Any, images: ImageInspector
    ) -> Resources:
        """Every store over these services (`open` makes them from the settings; the fast test tier
        passes in-process ones)."""
        secret = settings.jwt_secret.reveal()
        accounts = Accounts(engine)
        return cls(
            settings=settings,
            engine=engine,
            redis=redis_client,
            jobs=JobStore(engine),
            accounts=accounts,
            key_cache=KeyCache(accounts.key_owner, ttl_s=settings.key_cache_ttl_s),
            rooms=Rooms(redis_client, ttl_s=settings.slot_lease_ttl_s),
            storage=Storage(s3, settings.s3_bucket),
            meter=StorageMeter(redis_client),
            audits=AuditStore(engine),
            rate=RateLimiter(redis_client),
            membership=Membership(engine),
            config=ConfigStore(engine),
            webhooks=WebhookStore(engine),
            batches=BatchStore(engine),
            login=LoginCodes(engine, secret) if secret else None,
            tokens=Tokens(secret, access_ttl_s=settings.access_token_ttl_s, refresh_ttl_s=settings.refresh_token_ttl_s)
            if secret
            else None,
            images=images,
        )

    def effective(self) -> Settings:
        """The settings with an admin's changes applied (seen by every process within a second)."""
        return self.config.effective(self.settings)

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def redis_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False
