"""Typed settings, read from the environment once per process. The only module that reads os.environ.

Every field's environment variable is its name in upper case (`.env.example` lists them all).
Unset means the embedded default: SQLite under ./var, an embedded Redis, an embedded S3 server,
and the vendor simulators on loopback. Secrets are `Secret` values that print as `****1234`.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


class Secret:
    """A value that never shows itself in repr, str, logs or tracebacks: only its last 4 chars."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return mask(self._value)

    __str__ = __repr__


def mask(value: str) -> str:
    return "****" + value[-4:] if len(value) > 8 else "****"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    # where state lives when nothing external is configured
    var_dir: Path = Path("var")
    # database: PostgreSQL in production, SQLite file under var/ by default
    database_url: str = ""
    db_pool_size: int = 10
    # Redis: broker, slot leases, locks; unset -> an embedded redis-server on embedded_redis_port
    redis_url: str = ""
    embedded_redis_port: int = 6390
    # object storage through the S3 API; unset endpoint -> an embedded S3 server (moto)
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = "genq-results"
    s3_access_key_id: str = "genq-local"
    s3_secret_access_key: Secret = Secret("genq-local-secret")
    s3_addressing_style: str = "path"
    embedded_s3_port: int = 9000
    signed_url_ttl_s: int = 900
    result_retention_days: int = 0  # a succeeded job's files are deleted this long after it ends; 0: kept
    storage_quota_bytes: int = 0  # the bucket's quota, for the 90 % alert (genq_storage_quota_bytes); 0: none
    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # vendor simulators (genq sim / genq run)
    sim_host: str = "127.0.0.1"
    sim_runninghub_port: int = 8100
    sim_hunyuan3d_port: int = 8101
    sim_kie_port: int = 8102
    sim_ci_port: int = 8103
    sim_samples_port: int = 8104
    sim_wechat_port: int = 8105
    sim_douyin_port: int = 8106
    sim_sms_port: int = 8107
    sim_wechatpay_port: int = 8108
    sim_alipay_port: int = 8109
    sim_auto_pay_s: float = 3.0  # genq run: every order is paid this long after it is created; 0 = off
    sim_media_scale: float = 1.0  # simulated outputs' size, resolution and length: 1 = the vendors'
    # `genq run` points every vendor at its simulator unless this is set
    run_real_vendors: bool = False
    # RunningHub (model_pose12)
    runninghub_base_url: str = "https://www.runninghub.cn"
    runninghub_api_key: Secret = Secret("")
    runninghub_webapp_id: int = 1947599512657453057
    runninghub_node_prompt: str = "6:text"
    runninghub_node_image: str = "40:image"
    runninghub_node_seed: str = "25:seed"
    runninghub_concurrency: int = 3
    # Tencent Cloud: Hunyuan 3D (API 3.0, TC3 signatures) and CI (COS signatures)
    tencent_secret_id: str = ""
    tencent_secret_key: Secret = Secret("")
    hunyuan3d_base_url: str = "https://ai3d.tencentcloudapi.com"
    hunyuan3d_region: str = "ap-guangzhou"
    hunyuan3d_concurrency: int = 3
    ci_bucket_url: str = "https://genq-ci-1250000000.cos.ap-guangzhou.myqcloud.com"
    ci_concurrency: int = 10
    # KIE (Sora 2 video)
    kie_base_url: str = "https://api.kie.ai"
    kie_api_key: Secret = Secret("")
    kie_callback_url: str = ""  # public URL of POST /v1/callbacks/kie; unset: polling only
    kie_webhook_hmac_key: Secret = Secret("")
    kie_concurrency_sora_2: int = 10
    kie_concurrency_sora_2_pro: int = 5
    vendor_timeout_s: float = 30.0
    max_download_bytes: int = 100 * 1024 * 1024
    # input images the API fetches to check: public http(s) only, unless allow-listed (CIDRs, host:port)
    fetch_allowlist: str = ""
    fetch_timeout_s: float = 10.0
    # jobs: prices (credits) and deadlines (seconds) by variant pattern, polling schedules
    prices: str = (
        "basic_clean=1,model_pose12=1,model_3d=5,"
        "video/sora-2/720p/10=15,video/sora-2/720p/15=20,video/sora-2-pro/720p/10=45,video/sora-2-pro/720p/15=60,"
        "video/sora-2-pro/1080p/10=100,video/sora-2-pro/1080p/15=130"
    )
    deadlines: str = "basic_clean=120,model_pose12=600,video/*/720p=300,video/*/1080p=900,model_3d=86400"
    poll_schedule_image: str = "0:2,30:5,120:10"
    poll_schedule_video_720p: str = "0:3,60:5,180:8"
    poll_schedule_video_1080p: str = "0:5,120:8,300:12"
    poll_schedule_3d: str = "0:5,60:10,300:20"
    poll_max: int = 2000
    # moderation (SPEC §5): every prompt and image checked before generation when enabled
    audit_enabled: bool = False
    moderation_platform: str = "wechat"  # default; a user or an API key may name another
    audit_threshold: float = 0.8  # verdicts less sure than this follow the policy below
    audit_low_confidence: str = "reject"  # reject | pass
    audit_pull_after_s: float = 120.0  # no verdict by then: query the platform, or submit again
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = ""
    wechat_secret: Secret = Secret("")
    wechat_openid: str = ""  # msgSecCheck v2 needs the openid of a user of the mini-program
    wechat_push_token: Secret = Secret("")  # the message-push Token that signs verdict pushes
    douyin_base_url: str = "https://developer.toutiao.com"
    douyin_appid: str = ""
    douyin_secret: Secret = Secret("")
    # scheduling: slot leases (kept alive by heartbeats every third of the TTL), retries, waits
    slot_lease_ttl_s: float = 30.0
    retry_waits_s: str = "2,4,8"
    vendor_busy_pause_s: float = 5.0  # a room's pause after a "too busy" answer without Retry-After
    max_wait_s: float = 86_400.0  # the longest a job waits in `queued` before it times out
    audit_deadline_s: float = 600.0  # moderation that never answers: `failed` + refund after this
    archive_max_attempts: int = 4  # any error counts; backs off by retry_waits_s between attempts
    degrade_window_s: float = 60.0  # seed 001: a (vendor, model) failing more than the threshold in
    degrade_threshold: float = 0.3  # a window runs at floor(limit x factor) (never below 1), and
    degrade_factor: float = 0.6  # recovers by one per healthy window
    degrade_min_samples: int = 5
    worker_threads: int = 8
    # maintenance: how long a job may sit in a state before the reconciler re-drives it
    reconcile_interval_s: float = 10.0
    stale_queued_s: float = 60.0
    stale_processing_s: float = 60.0
    stale_archiving_s: float = 300.0
    stale_refund_s: float = 30.0
    # maintenance's periodic tasks (SPEC §10, seed 000); each runs in one process cluster-wide
    job_retention_days: int = 0  # ended jobs, their events, deliveries deleted after this (not the ledger); 0: kept
    upload_retention_days: int = 0  # direct uploads deleted this long after they were made; 0: kept
    temp_max_age_s: float = 86_400.0  # the weekly sweep removes genq's temp leftovers unchanged this long; 0: off
    hunyuan3d_task_ttl_s: float = 86_400.0  # Hunyuan 3D forgets a task this long after it is made: the job ends; 0: off
    slot_reconcile_interval_s: float = 60.0  # leases in Redis checked against the database this often; 0: off
    usage_stats_enabled: bool = True  # each closed month's usage per user and kind stored once
    # logs and metrics
    # accounts: phone login, JWTs, plans, payments, uploads, rate limits
    jwt_secret: Secret = Secret("")  # required for phone login; `genq run` makes one
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 86400
    sms_code_ttl_s: int = 300
    sms_max_wrong_codes: int = 5  # then the phone is locked for sms_lock_s
    sms_lock_s: int = 900
    sms_base_url: str = "https://sms.tencentcloudapi.com"
    sms_sdk_app_id: str = ""
    sms_sign_name: str = ""
    sms_template_id: str = ""
    # plans: name:price_fen:credits:concurrency:batch, comma-separated (SPEC §4)
    plans: str = "free:0:0:1:5,pro:9900:100:3:15,pro_plus:19900:250:5:25,enterprise:99900:1500:10:50"
    membership_days: int = 30
    public_base_url: str = ""  # how payment channels reach this API (notify URLs); default: api host:port
    wechatpay_base_url: str = "https://api.mch.weixin.qq.com"
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    wechatpay_serial_no: str = ""  # the merchant certificate's serial
    wechatpay_private_key: Secret = Secret("")  # merchant key, PEM
    wechatpay_public_key: str = ""  # WeChat Pay public key, PEM
    wechatpay_public_key_id: str = ""  # PUB_KEY_ID_...
    wechatpay_api_v3_key: Secret = Secret("")
    alipay_base_url: str = "https://openapi.alipay.com"
    alipay_app_id: str = ""
    alipay_private_key: Secret = Secret("")  # the app's key, PEM
    alipay_public_key: str = ""  # Alipay's public key, PEM
    upload_ttl_s: int = 600
    upload_max_bytes: int = 8 * 1024 * 1024
    rate_jobs_per_minute: int = 120  # per user
    rate_jobs_per_minute_ip: int = 240
    rate_auth_per_minute_ip: int = 30
    rate_sms_per_hour_phone: int = 5
    # API keys: each process keeps a looked-up key this long; a revocation reaches the other processes
    # within it (the revoking process forgets at once)
    key_cache_ttl_s: float = 5.0
    # webhooks (SPEC §8): targets must be public addresses unless FETCH_ALLOWLIST lists them
    webhook_timeout_s: float = 10.0
    webhook_retry_for_s: int = 24 * 3600  # a delivery is retried with backoff for this long, then given up
    webhook_retry_waits_s: str = "5,30,120,600,1800,3600,7200,14400,28800"  # then the last step, until RETRY_FOR
    # set by `genq run` for its children: they stop when it is gone
    supervisor_pid: int = 0
    log_level: str = "info"
    log_format: str = "auto"  # auto: JSON off a TTY, console on one
    prometheus_multiproc_dir: str = ""
    # `genq worker` serves GET /metrics (its own families) on this port, on every interface; 0: off
    worker_metrics_port: int = 0

    def __post_init__(self) -> None:
        for name in NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise SettingsError(f"{name.upper()}: must be 0 (off) or more, not {getattr(self, name)}")
        if self.worker_metrics_port > MAX_PORT:
            port = self.worker_metrics_port
            raise SettingsError(f"WORKER_METRICS_PORT: must be a port (1-{MAX_PORT}) or 0 (off), not {port}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name.upper(), raw, hints[f.name])
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver we use (psycopg 3 for PostgreSQL)."""
        url = self.database_url or f"sqlite:///{self.var_dir / 'genq.db'}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def retry_waits(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.retry_waits_s.split(",") if w.strip())

    @property
    def webhook_retry_waits(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.webhook_retry_waits_s.split(",") if w.strip())

    def public(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print or log."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


NOT_NEGATIVE = (
    "job_retention_days",
    "upload_retention_days",
    "temp_max_age_s",
    "hunyuan3d_task_ttl_s",
    "slot_reconcile_interval_s",
    "worker_metrics_port",
)
MAX_PORT = 65535


def child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `overrides`, for the processes `genq run` starts. An empty
    PROMETHEUS_MULTIPROC_DIR is left out: prometheus_client takes a variable that is set at all for
    multiprocess mode, and would write its files into the child's working directory."""
    env = {**os.environ, **overrides}
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _parse(name: str, raw: str, kind: Any) -> Any:
    if isinstance(kind, types.UnionType):  # `str | None` and friends: parse as the non-None member
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if kind is bool:
            return _parse_bool(raw)
        if kind in (int, float, str, Path):
            return kind(raw)
        if kind is Secret:
            return Secret(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: cannot read {raw!r} as {kind.__name__}") from exc
    raise SettingsError(f"{name}: unsupported setting type {kind!r}")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
