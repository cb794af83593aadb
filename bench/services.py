"""What the bench runs on: DATABASE_URL / REDIS_URL / S3_ENDPOINT_URL when set, else embedded defaults
(an SQLite file in a temporary directory, the embedded redis-server and moto's S3, on free loopback
ports). The Redis database in use is flushed before each scenario: the embedded one, or the one
REDIS_URL names (never any other).
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis

from bench import scale
from infra.db import make_engine
from infra.embedded import EmbeddedRedis, EmbeddedS3, free_port
from infra.migrate import upgrade
from infra.settings import Secret, Settings

KIE_BASE_URL = "http://kie.sim"  # never resolved: the simulator is an httpx transport in this process
UNLIMITED = 1_000_000


@contextmanager
def services(env: Settings) -> Iterator[Settings]:
    """Start what the environment does not name; the settings every scenario starts from."""
    with tempfile.TemporaryDirectory(prefix="genq-bench-") as tmp, ExitStack() as stack:
        var_dir = Path(tmp)
        redis_url = env.redis_url or _embedded_redis(stack, var_dir)
        s3_url = env.s3_endpoint_url or _embedded_s3(stack)
        settings = bench_settings(env, var_dir=var_dir, redis_url=redis_url, s3_url=s3_url)
        _migrate(settings)
        yield settings


def bench_settings(env: Settings, *, var_dir: Path, redis_url: str, s3_url: str) -> Settings:
    """The environment's settings with the bench's: the KIE simulator, polling only (no callback URL),
    the default poll schedules scaled, no moderation, submission rate limits out of the way."""
    defaults = Settings()
    return env.with_(
        var_dir=var_dir,
        redis_url=redis_url,
        s3_endpoint_url=s3_url,
        s3_bucket=f"genq-bench-{secrets.token_hex(4)}",
        kie_base_url=KIE_BASE_URL,
        kie_api_key=Secret("kie-bench-" + secrets.token_hex(16)),
        kie_callback_url="",
        kie_webhook_hmac_key=Secret(""),
        poll_schedule_video_720p=scale.scaled_schedule(defaults.poll_schedule_video_720p),
        poll_schedule_video_1080p=scale.scaled_schedule(defaults.poll_schedule_video_1080p),
        audit_enabled=False,
        rate_jobs_per_minute=UNLIMITED,
        rate_jobs_per_minute_ip=UNLIMITED,
        log_level="error",  # a room rebuilt after the flush is expected here, not news
    )


def flush(settings: Settings) -> None:
    """Empty the one Redis database the bench was given (or started)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def _embedded_redis(stack: ExitStack, var_dir: Path) -> str:
    server = EmbeddedRedis(free_port(), workdir=var_dir / "redis").start()
    stack.callback(server.stop)
    return server.url


def _embedded_s3(stack: ExitStack) -> str:
    server = EmbeddedS3(free_port()).start()
    stack.callback(server.stop)
    return server.url


def _migrate(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
