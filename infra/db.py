"""The schema (SQLAlchemy Core tables; Alembic migrations create them) and the engine.

One synchronous data layer serves the API's threads and the actors. PostgreSQL goes through
psycopg 3 with a connection pool; the embedded default is an SQLite file in WAL mode, shared by
every genq process on the machine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.pool import ConnectionPoolEntry

from domain.jobs import JobStatus
from infra.settings import Settings


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend keeps (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("phone", String(32), nullable=False, unique=True),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("moderation_platform", String(16), nullable=True),  # overrides MODERATION_PLATFORM
    Column("role", String(16), nullable=False, server_default="user"),  # user | admin
    Column("plan", String(32), nullable=True),
    Column("member_until", UTCDateTime, nullable=True),
    Column("plan_credits", BigInteger, nullable=False, server_default="0"),  # unused credits of the plan
    Column("disabled_at", UTCDateTime, nullable=True),  # set by an admin: every key and token refused (0006)
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint("plan_credits >= 0 AND plan_credits <= balance", name="plan_credits_within_balance"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the whole key
    Column("last4", String(4), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("moderation_platform", String(16), nullable=True),  # overrides the user's
    Column("webhook_url", Text, nullable=True),  # the default for jobs submitted with this key (0009)
    Column("webhook_events", String(16), nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("input", JSON, nullable=False),
    Column("price", Integer, nullable=False),
    Column("vendor", String(32), nullable=False),
    Column("model", String(64), nullable=False),
    Column("vendor_task_id", String(64), nullable=True, index=True),
    Column("idempotency_key", String(128), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("results", JSON, nullable=True),  # [{key, content_type, size}]: storage keys, never vendor URLs
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("polls", Integer, nullable=False, default=0),
    Column("deadline_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),  # last progress: state move or heartbeat
    Column("processing_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("moderation_platform", String(16), nullable=True),  # chosen at submit when audits are on
    # the engine (0004): fencing token, admissions, priority class, budgets and back-offs
    Column("fence", Integer, nullable=False, server_default="0"),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("priority", String(16), nullable=False, server_default="interactive"),
    Column("deadline_s", Integer, nullable=True),  # run budget from admission; deadline_at is the current state's
    Column("admitted_at", UTCDateTime, nullable=True),
    Column("not_before", UTCDateTime, nullable=True),
    Column("submit_failures", Integer, nullable=False, server_default="0"),
    Column("archive_attempts", Integer, nullable=False, server_default="0"),
    Column("external_id", String(128), nullable=True),  # the client's own reference (0005)
    Column("retry_of", String(32), nullable=True, index=True),  # the job this one retries (0007)
    Column("webhook_url", Text, nullable=True),  # where its events are delivered (0009)
    Column("webhook_events", String(16), nullable=True),  # completed | all
    Column("batch_id", String(32), nullable=True, index=True),  # the batch it is a row of (0010)
    Column("batch_row", Integer, nullable=True),  # its row: a row's retries share it
    Column("results_expired_at", UTCDateTime, nullable=True),  # retention deleted its files (0011)
    UniqueConstraint("user_id", "idempotency_key"),
    UniqueConstraint("user_id", "external_id"),
    CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in JobStatus)})", name="status_known"),
    Index("ix_jobs_user_created", "user_id", "created_at", "id"),
    Index("ix_jobs_status_updated", "status", "updated_at"),
    Index("ix_jobs_user_status", "user_id", "status"),
    Index("ix_jobs_status_deadline", "status", "deadline_at"),
)

# A batch (0010): rows of one kind from defaults + overrides, each row a job (its retries more
# jobs of the same row). Its progress is read from its jobs; it stores only what they cannot say.
batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("name", String(128), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("defaults", JSON, nullable=False),  # {"input", "webhook_url"?, "webhook_events"?}
    Column("rows", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # running | paused | cancelled (completed is read)
    Column("idempotency_key", String(128), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("user_id", "idempotency_key"),
    Index("ix_batches_user_created", "user_id", "created_at", "id"),
)

# Every call that may create a vendor task, written down before the call is made: a task the
# vendor made is then always traceable to its job, to a cancel, or to an unknown outcome.
vendor_attempts = Table(
    "vendor_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", String(32), ForeignKey("jobs.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("vendor", String(32), nullable=False),
    # calling -> accepted | busy | failed | unknown (the answer was lost) | abandoned (accepted,
    # but the job had moved on: cancelled at the vendor where it can be)
    Column("outcome", String(16), nullable=False),
    Column("task_id", String(64), nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("cancelled_at", UTCDateTime, nullable=True),
    UniqueConstraint("job_id", "attempt"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", String(32), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("from_status", String(32), nullable=True),
    Column("to_status", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("detail", JSON, nullable=True),
)

moderation_audits = Table(
    "moderation_audits",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("job_id", String(32), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("item_no", Integer, nullable=False),  # which of the job's inputs (prompt, image, views)
    Column("attempt", Integer, nullable=False),  # 0, then one more per re-submission (pull fallback)
    Column("item_kind", String(8), nullable=False),  # text | image
    Column("platform", String(16), nullable=False),
    Column("platform_task_id", String(128), nullable=True),
    Column("status", String(16), nullable=False),  # pending | submitted | decided
    Column("decision", String(16), nullable=True),  # pass | reject | review
    Column("confidence", Float, nullable=True),
    Column("labels", JSON, nullable=True),
    Column("raw", JSON, nullable=True),  # the platform's answer, as it came
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    UniqueConstraint("job_id", "item_no", "attempt"),
    Index("ix_moderation_audits_platform_task", "platform", "platform_task_id"),
)

sms_codes = Table(
    "sms_codes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("phone", String(32), nullable=False),
    Column("code_hash", String(64), nullable=False),  # HMAC-SHA256 under the server secret
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("consumed_at", UTCDateTime, nullable=True),
    Index("ix_sms_codes_phone_created", "phone", "created_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False, index=True),
    Column("plan", String(32), nullable=False),
    Column("channel", String(16), nullable=False),  # wechat | alipay
    Column("amount_fen", Integer, nullable=False),
    Column("credits", Integer, nullable=False),  # what the plan grants, fixed when ordered
    Column("status", String(16), nullable=False),  # pending | paid | failed
    Column("payment", JSON, nullable=True),  # what the client needs to pay (code_url, pay URL)
    Column("channel_transaction_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime, nullable=True),
    UniqueConstraint("channel", "channel_transaction_id"),  # one grant per channel transaction
)

config_overrides = Table(
    "config_overrides",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

admin_actions = Table(
    "admin_actions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("action", String(32), nullable=False),  # jobs.retry | jobs.cancel
    Column("filter", JSON, nullable=False),
    Column("matched", Integer, nullable=False),
    Column("acted", Integer, nullable=False),
    Column("by", String(32), ForeignKey("users.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

# Webhooks (0009): a delivery is written in the transaction of the state move it announces (an
# outbox), so no event is lost with a message; each try is recorded.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id"), primary_key=True),
    Column("secret", String(64), nullable=False),  # whsec_...
    Column("previous", String(64), nullable=True),  # still signs for a while after a rotation
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),  # msg_...: the webhook-id, the same on every try
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("job_id", String(32), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("event_id", BigInteger, nullable=False),  # the job_events row it announces
    Column("event_type", String(32), nullable=False),  # job.<status>
    Column("url", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("payload", Text, nullable=True),  # the body, fixed at the first try so every try sends the same
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("fence", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),  # None: no answer (timeout, refused, not public)
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
)

config_changes = Table(
    "config_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False),
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=False),
    Column("changed_by", String(32), ForeignKey("users.id"), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_config_changes_key_changed", "key", "changed_at"),
)

credit_ledger = Table(
    "credit_ledger",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False, index=True),
    # the job charged or refunded, kept after retention deleted the job (0012): no foreign key
    Column("job_id", String(32), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("job_id", "kind"),  # one charge and one refund per job; NULL job ids never collide
)

# Each closed month's usage per user and kind, stored once by maintenance (infra/reports.py; 0012).
usage_months = Table(
    "usage_months",
    metadata,
    Column("month", String(7), primary_key=True),  # YYYY-MM: stored once, never changed
    Column("stored_at", UTCDateTime, nullable=False),
    Column("rows", Integer, nullable=False),
)
monthly_usage = Table(
    "monthly_usage",
    metadata,
    Column("month", String(7), ForeignKey("usage_months.month"), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("submitted", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("batches", Integer, nullable=False),
    Column("batch_jobs", Integer, nullable=False),
    Column("credits_charged", BigInteger, nullable=False),
    Column("credits_refunded", BigInteger, nullable=False),
)


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # No ping before each checkout (a round trip per use): connections are recycled after 30 min, and
    # one the server dropped is invalidated when its error comes back (the pool reconnects; the API
    # answers that request 503 + Retry-After, an actor's message is retried).
    return create_engine(
        url, pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size, pool_recycle=1800, pool_use_lifo=True
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the driver, say when transactions begin (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    """Take SQLite's write lock at BEGIN, so concurrent writers wait instead of failing mid-way; a
    connection of `reads()` begins a plain (deferred) transaction: WAL readers need no lock."""
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READS) else "BEGIN IMMEDIATE")


AUTOCOMMIT = "AUTOCOMMIT"
READS = "genq_reads"


def reads(engine: Engine) -> Engine:
    """The engine for reads that are one statement. On PostgreSQL its connections run in autocommit,
    so a read is one round trip (psycopg sends BEGIN and ROLLBACK as round trips of their own
    otherwise); the mode is a client-side switch on checkout, the pool is the engine's. On SQLite
    they take no write lock. Reads that need one snapshot across statements, and every write, use
    `engine.begin()`."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READS: True})
    return engine.execution_options(isolation_level=AUTOCOMMIT)
