"""`/v1/admin`: users and jobs search, audited configuration, monthly usage (SPEC §8 Admin).

Every handler needs the admin role (the `admin` dependency: 401 without a key, 403 `forbidden`
for anyone else). Configuration goes through `ConfigStore`, so a change is validated, recorded and
seen by every process within its cache time. The searches and the usage report are read-only SQL.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import ColumnElement, Engine, Select, and_, case, func, or_, select

from api.auth import CurrentUser, admin_user
from api.jobs import ErrorOut, redacted
from domain.credits import LedgerKind
from domain.errors import InvalidInput
from domain.jobs import REFUNDABLE, JobKind, JobStatus
from infra.config_store import ADJUSTABLE, Change, ConfigStore
from infra.db import credit_ledger, jobs, users
from infra.jobstore import decode_cursor
from infra.resources import Resources

Admin = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]
Config = NamedDependency[ConfigStore]
Limit = Annotated[int, QueryParameter(ge=1, le=100)]


class UserOut(msgspec.Struct):
    id: str
    phone: str
    role: str
    balance: int
    plan: str | None
    plan_credits: int
    member_until: datetime | None
    created_at: datetime


class UserPage(msgspec.Struct):
    items: list[UserOut]
    next_cursor: str | None


class AdminJobOut(msgspec.Struct):
    id: str
    user_id: str
    kind: JobKind
    status: JobStatus
    price: int
    vendor: str
    model: str
    vendor_task_id: str | None
    polls: int
    input: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    finished_at: datetime | None = None
    error: ErrorOut | None = None


class AdminJobPage(msgspec.Struct):
    items: list[AdminJobOut]
    next_cursor: str | None


class ConfigEntryOut(msgspec.Struct):
    key: str
    value: str  # in effect now
    default: str  # from the environment
    overridden: bool


class ConfigIn(msgspec.Struct, forbid_unknown_fields=True):
    value: str


class ChangeOut(msgspec.Struct):
    key: str
    old_value: str | None
    new_value: str
    changed_by: str
    changed_at: datetime

    @classmethod
    def of(cls, change: Change) -> ChangeOut:
        return cls(change.key, change.old_value, change.new_value, change.changed_by, change.changed_at)


class UsageOut(msgspec.Struct):
    user_id: str
    phone: str
    kind: str
    submitted: int = 0  # jobs created in the month
    succeeded: int = 0  # jobs that finished in the month, by how
    failed: int = 0  # any refundable terminal state: failed, timed_out, cancelled, audit_failed
    credits_charged: int = 0  # ledger rows written in the month
    credits_refunded: int = 0


class UsageReport(msgspec.Struct):
    month: str
    start: datetime
    end: datetime  # exclusive
    items: list[UsageOut]


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    dependencies = {"admin": Provide(admin_user, sync_to_thread=False)}

    @get("/users", sync_to_thread=True)
    def search_users(
        self,
        admin: Admin,
        resources: Res,
        phone: FromQuery[str | None] = None,
        role: FromQuery[str | None] = None,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
    ) -> UserPage:
        """Newest first; `phone` matches any part of the number; pass `next_cursor` back as `cursor`."""
        query = select(users)
        if phone:
            query = query.where(users.c.phone.contains(phone, autoescape=True))
        if role:
            query = query.where(users.c.role == role)
        rows, next_cursor = _page(resources.engine, query, users.c.created_at, users.c.id, limit, cursor)
        return UserPage([_user(row) for row in rows], next_cursor)

    @get("/jobs", sync_to_thread=True)
    def search_jobs(
        self,
        admin: Admin,
        resources: Res,
        user_id: FromQuery[str | None] = None,
        status: FromQuery[JobStatus | None] = None,
        kind: FromQuery[JobKind | None] = None,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
    ) -> AdminJobPage:
        """Every user's jobs, newest first, filtered by owner, status and kind."""
        query = select(jobs)
        if user_id:
            query = query.where(jobs.c.user_id == user_id)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        rows, next_cursor = _page(resources.engine, query, jobs.c.created_at, jobs.c.id, limit, cursor)
        return AdminJobPage([_job(row) for row in rows], next_cursor)

    @get("/config", sync_to_thread=True)
    def read_config(self, admin: Admin, resources: Res, config: Config) -> list[ConfigEntryOut]:
        """Every adjustable setting, its value in effect and whether an admin overrode it."""
        base = resources.settings
        effective, overridden = config.effective(base), config.overrides()
        return [
            ConfigEntryOut(key, str(getattr(effective, key)), str(getattr(base, key)), key in overridden)
            for key in sorted(ADJUSTABLE)
        ]

    @put("/config/{key:str}", sync_to_thread=True)
    def change_config(
        self, key: FromPath[str], data: JSONBody[ConfigIn], admin: Admin, resources: Res, config: Config
    ) -> ChangeOut:
        """Validate, store and record; every process uses the new value for its next job."""
        change = config.set(key, data.value, base=resources.settings, by=admin.id, now=datetime.now(UTC))
        return ChangeOut.of(change)

    @get("/config/changes", sync_to_thread=True)
    def config_history(
        self, admin: Admin, config: Config, key: FromQuery[str | None] = None, limit: Limit = 100
    ) -> list[ChangeOut]:
        """Who changed what, when, from what to what; newest first."""
        return [ChangeOut.of(change) for change in config.history(key, limit=limit)]

    @get("/usage", sync_to_thread=True)
    def usage(self, admin: Admin, resources: Res, month: FromQuery[str | None] = None) -> UsageReport:
        """Per user and kind for one calendar month (UTC, default: this one), each count by when it happened."""
        period = Month.parse(month) if month else Month.of(datetime.now(UTC))
        return UsageReport(period.name, period.start, period.end, usage_rows(resources.engine, period))


@dataclass(frozen=True)
class Month:
    name: str  # YYYY-MM
    start: datetime
    end: datetime  # the next month's start

    @classmethod
    def parse(cls, text: str) -> Month:
        match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        try:
            if match is None:
                raise ValueError(text)
            return cls.of(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC))
        except ValueError:
            raise InvalidInput("month", f"month is YYYY-MM (e.g. 2026-03), not {text!r}") from None

    @classmethod
    def of(cls, at: datetime) -> Month:
        start = datetime(at.year, at.month, 1, tzinfo=UTC)
        end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
        return cls(f"{at.year:04d}-{at.month:02d}", start, end)


def usage_rows(engine: Engine, month: Month) -> list[UsageOut]:
    """Two GROUP BYs (jobs; ledger joined to jobs for the kind), merged per (user, kind)."""

    def within(column: Any) -> ColumnElement[bool]:
        return and_(column >= month.start, column < month.end)

    def count(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    refundable = [s.value for s in REFUNDABLE]
    counts = (
        select(
            jobs.c.user_id,
            users.c.phone,
            jobs.c.kind,
            count(within(jobs.c.created_at)).label("submitted"),
            count(and_(within(jobs.c.finished_at), jobs.c.status == JobStatus.SUCCEEDED.value)).label("succeeded"),
            count(and_(within(jobs.c.finished_at), jobs.c.status.in_(refundable))).label("failed"),
        )
        .join(users, users.c.id == jobs.c.user_id)
        .where(or_(within(jobs.c.created_at), within(jobs.c.finished_at)))
        .group_by(jobs.c.user_id, users.c.phone, jobs.c.kind)
    )
    ledger = credit_ledger.c
    money = (
        select(
            ledger.user_id,
            users.c.phone,
            jobs.c.kind,
            func.coalesce(func.sum(case((ledger.kind == LedgerKind.CHARGE.value, -ledger.amount), else_=0)), 0).label(
                "charged"
            ),
            func.coalesce(func.sum(case((ledger.kind == LedgerKind.REFUND.value, ledger.amount), else_=0)), 0).label(
                "refunded"
            ),
        )
        .select_from(credit_ledger.join(jobs, jobs.c.id == ledger.job_id).join(users, users.c.id == ledger.user_id))
        .where(within(ledger.created_at), ledger.kind.in_([LedgerKind.CHARGE.value, LedgerKind.REFUND.value]))
        .group_by(ledger.user_id, users.c.phone, jobs.c.kind)
    )
    merged: dict[tuple[str, str], UsageOut] = {}
    with engine.connect() as conn:
        for row in conn.execute(counts):
            out = merged.setdefault((row.user_id, row.kind), UsageOut(row.user_id, row.phone, row.kind))
            out.submitted, out.succeeded, out.failed = int(row.submitted), int(row.succeeded), int(row.failed)
        for sums in conn.execute(money):
            out = merged.setdefault((sums.user_id, sums.kind), UsageOut(sums.user_id, sums.phone, sums.kind))
            out.credits_charged, out.credits_refunded = int(sums.charged), int(sums.refunded)
    return [merged[key] for key in sorted(merged)]


def _page(
    engine: Engine, query: Select[Any], created_at: Any, row_id: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Newest first by (created_at, id); the cursor is the same opaque shape `/v1/jobs` uses."""
    if cursor:
        at, after = decode_cursor(cursor)
        query = query.where(or_(created_at < at, and_(created_at == at, row_id < after)))
    query = query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    with engine.connect() as conn:
        rows = list(conn.execute(query).mappings())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    token = f"{last['created_at'].isoformat()}|{last['id']}"
    return rows[:limit], base64.urlsafe_b64encode(token.encode()).decode()


def _user(row: Any) -> UserOut:
    return UserOut(
        id=row["id"],
        phone=row["phone"],
        role=row["role"],
        balance=int(row["balance"]),
        plan=row["plan"],
        plan_credits=int(row["plan_credits"]),
        member_until=row["member_until"],
        created_at=row["created_at"],
    )


def _job(row: Any) -> AdminJobOut:
    return AdminJobOut(
        id=row["id"],
        user_id=row["user_id"],
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        price=row["price"],
        vendor=row["vendor"],
        model=row["model"],
        vendor_task_id=row["vendor_task_id"],
        polls=row["polls"],
        input=redacted(row["input"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deadline_at=row["deadline_at"],
        finished_at=row["finished_at"],
        error=ErrorOut(row["error_code"], row["error_message"] or "") if row["error_code"] else None,
    )
