"""`/v1/admin`: users and jobs search, audited configuration, monthly usage (SPEC §8 Admin).

Every handler needs the admin role (the `admin` dependency: 401 without a key, 403 `forbidden`
for anyone else). Configuration goes through `ConfigStore`, so a change is validated, recorded and
seen by every process within its cache time. The searches and the report are infra's (read-only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api import docs
from api.auth import CurrentUser, admin_user
from api.jobs import cancel, retry
from api.views import ErrorOut, redacted
from domain.errors import DomainError, NotFound
from domain.jobs import RETRYABLE, Job, JobKind, JobStatus
from domain.pricing import PriceList
from infra import reports, waiting
from infra.accounts import User
from infra.admin_log import AdminAction, AdminLog
from infra.config_store import ADJUSTABLE, Change, ConfigStore
from infra.jobstore import JobFilter
from infra.paging import is_id
from infra.reports import Month
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
    disabled_at: datetime | None = None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            user.id, user.phone, user.role, user.balance, user.plan, user.plan_credits, user.member_until,
            user.created_at, user.disabled_at,
        )  # fmt: skip


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
    batch_id: str | None = None
    batch_row: int | None = None

    @classmethod
    def of(cls, job: Job) -> AdminJobOut:
        return cls(
            id=job.id,
            user_id=job.user_id,
            kind=job.kind,
            status=job.status,
            price=job.price,
            vendor=job.vendor,
            model=job.model,
            vendor_task_id=job.vendor_task_id,
            polls=job.polls,
            input=redacted(job.input),
            created_at=job.created_at,
            updated_at=job.updated_at,
            deadline_at=job.deadline_at,
            finished_at=job.finished_at,
            error=ErrorOut(job.error_code, job.error_message or "") if job.error_code else None,
            batch_id=job.batch_id,
            batch_row=job.batch_row,
        )


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
    batches: int = 0  # batches created in the month
    batch_jobs: int = 0  # of the jobs created, those that are rows of a batch (retries included)
    credits_charged: int = 0  # ledger rows written in the month
    credits_refunded: int = 0


class UsageReport(msgspec.Struct):
    month: str
    start: datetime
    end: datetime  # exclusive
    items: list[UsageOut]
    stored_at: datetime | None = None  # a closed month stored by maintenance; None: computed now


class RoomOut(msgspec.Struct):
    """One (vendor, model) waiting room: its limit, the limit in force (lower while degraded), slots
    held, jobs waiting, how long it stays paused after a vendor "too busy", the current window."""

    room: str
    limit: int
    effective_limit: int
    degraded: bool
    in_flight: int
    waiting: int
    paused_ms: int
    ready: bool
    window_failures: int
    window_total: int


Instant = Annotated[datetime, msgspec.Meta(tz=True)]  # with its offset: a naive time is 422


class JobFilterIn(msgspec.Struct, forbid_unknown_fields=True):
    """Every field given must match; created_to is exclusive."""

    status: JobStatus | None = None
    kind: JobKind | None = None
    vendor: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    error_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_id: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    created_from: Instant | None = None
    created_to: Instant | None = None

    def __post_init__(self) -> None:
        """The bounds in UTC, as stored; a time UTC cannot hold (year 1 east of it, 9999 west) is 422."""
        for name in ("created_from", "created_to"):
            if (value := getattr(self, name)) is not None:
                try:
                    setattr(self, name, value.astimezone(UTC))
                except OverflowError:
                    raise ValueError(f"{name} is out of range in UTC") from None


class BulkIn(msgspec.Struct, forbid_unknown_fields=True):
    filter: JobFilterIn
    dry_run: bool = True  # the default answers the count and acts on nothing
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000


class BulkOut(msgspec.Struct):
    action: str
    dry_run: bool
    matched: int  # jobs the filter picked among those the action applies to
    acted: int  # jobs it was done to (a job may have moved on meanwhile)
    job_ids: list[str]  # the picked jobs (dry run), or the jobs acted on / made


class AdminActionOut(msgspec.Struct):
    action: str
    filter: dict[str, Any]
    matched: int
    acted: int
    by: str
    at: datetime


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    dependencies = {"admin": Provide(admin_user, sync_to_thread=False)}

    @get("/users", sync_to_thread=True, responses=docs.errors(400, 401, 403))
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
        found, next_cursor = resources.accounts.search(phone=phone, role=role, limit=limit, cursor=cursor)
        return UserPage([UserOut.of(user) for user in found], next_cursor)

    @post("/users/{user_id:str}/disable", status_code=200, sync_to_thread=True, responses=docs.errors(401, 403, 404))
    def disable_user(self, user_id: FromPath[str], admin: Admin, resources: Res) -> UserOut:
        """Every key of the user is refused at once here and by every API process within KEY_CACHE_TTL_S,
        every token at once everywhere; running jobs are left to finish."""
        return _set_disabled(resources, user_id, disabled=True)

    @post("/users/{user_id:str}/enable", status_code=200, sync_to_thread=True, responses=docs.errors(401, 403, 404))
    def enable_user(self, user_id: FromPath[str], admin: Admin, resources: Res) -> UserOut:
        return _set_disabled(resources, user_id, disabled=False)

    @post("/jobs/retry", status_code=200, sync_to_thread=True, responses=docs.errors(401, 403))
    def bulk_retry(
        self, data: JSONBody[BulkIn], admin: Admin, resources: Res, prices: NamedDependency[PriceList]
    ) -> BulkOut:
        """Retry (each one a new job, charged to its owner) every failed, timed-out or cancelled job
        the filter picks; `dry_run` (the default) only counts them. Recorded in /v1/admin/actions."""
        return _bulk(resources, admin, data, "jobs.retry", RETRYABLE, lambda job: retry(resources, prices, job).id)

    @post("/jobs/cancel", status_code=200, sync_to_thread=True, responses=docs.errors(401, 403))
    def bulk_cancel(self, data: JSONBody[BulkIn], admin: Admin, resources: Res) -> BulkOut:
        """Cancel (and refund) every waiting or running job the filter picks; `dry_run` (the default)
        only counts them. Recorded in /v1/admin/actions."""
        return _bulk(
            resources, admin, data, "jobs.cancel", CANCELLABLE, lambda job: cancel(resources, job, by="admin").id
        )

    @get("/actions", sync_to_thread=True, responses=docs.errors(401, 403))
    def actions(self, admin: Admin, resources: Res, limit: Limit = 100) -> list[AdminActionOut]:
        """Bulk actions taken, newest first: who, when, the filter, how many."""
        return [
            AdminActionOut(a.action, dict(a.filter), a.matched, a.acted, a.by, a.at)
            for a in AdminLog(resources.engine).recent(limit=limit)
        ]

    @get("/jobs", sync_to_thread=True, responses=docs.errors(400, 401, 403))
    def search_jobs(
        self,
        admin: Admin,
        resources: Res,
        user_id: FromQuery[str | None] = None,
        status: FromQuery[JobStatus | None] = None,
        kind: FromQuery[JobKind | None] = None,
        batch_id: FromQuery[str | None] = None,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
    ) -> AdminJobPage:
        """Every user's jobs, newest first, filtered by owner, status, kind and batch."""
        found, next_cursor = resources.jobs.search(
            user_id=user_id or None, status=status, kind=kind, batch_id=batch_id or None, limit=limit, cursor=cursor
        )
        return AdminJobPage([AdminJobOut.of(job) for job in found], next_cursor)

    @get("/config", sync_to_thread=True, responses=docs.errors(401, 403))
    def read_config(self, admin: Admin, resources: Res, config: Config) -> list[ConfigEntryOut]:
        """Every adjustable setting, its value in effect and whether an admin overrode it."""
        base = resources.settings
        effective, overridden = config.effective(base), config.overrides()
        return [
            ConfigEntryOut(key, str(getattr(effective, key)), str(getattr(base, key)), key in overridden)
            for key in sorted(ADJUSTABLE)
        ]

    @put("/config/{key:str}", sync_to_thread=True, responses=docs.errors(401, 403))
    def change_config(
        self, key: FromPath[str], data: JSONBody[ConfigIn], admin: Admin, resources: Res, config: Config
    ) -> ChangeOut:
        """Validate, store and record; every process uses the new value for its next job."""
        change = config.set(key, data.value, base=resources.settings, by=admin.id, now=datetime.now(UTC))
        return ChangeOut.of(change)

    @get("/config/changes", sync_to_thread=True, responses=docs.errors(400, 401, 403))
    def config_history(
        self, admin: Admin, config: Config, key: FromQuery[str | None] = None, limit: Limit = 100
    ) -> list[ChangeOut]:
        """Who changed what, when, from what to what; newest first."""
        return [ChangeOut.of(change) for change in config.history(key, limit=limit)]

    @get("/scheduler", sync_to_thread=True, responses=docs.errors(401, 403))
    def scheduler(self, admin: Admin, resources: Res) -> list[RoomOut]:
        """Every waiting room as the scheduler sees it now (degradation included)."""
        rooms = waiting.room_states(resources.effective(), resources.rooms, now=datetime.now(UTC))
        return [RoomOut(room=name, **state) for name, state in rooms.items()]

    @get("/usage", sync_to_thread=True, responses=docs.errors(401, 403))
    def usage(self, admin: Admin, resources: Res, month: FromQuery[str | None] = None) -> UsageReport:
        """Per user and kind for one calendar month (UTC, default: this one), each count by when it happened.
        A closed month is read as maintenance stored it (`stored_at`), the current one computed now."""
        period = Month.parse(month) if month else Month.of(datetime.now(UTC))
        found, stored_at = reports.report(resources.engine, period)
        rows = [UsageOut(**asdict(row)) for row in found]
        return UsageReport(period.name, period.start, period.end, rows, stored_at)


def _set_disabled(resources: Resources, user_id: str, *, disabled: bool) -> UserOut:
    if not (is_id(user_id) and resources.accounts.set_disabled(user_id, disabled=disabled, now=datetime.now(UTC))):
        raise NotFound(f"no user {user_id}", user_id=user_id)
    resources.key_cache.forget_user(user_id)  # refused here at once; elsewhere within key_cache_ttl_s
    user = resources.accounts.get(user_id)
    assert user is not None
    return UserOut.of(user)


CANCELLABLE = (JobStatus.PENDING_AUDIT, JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.PROCESSING)


def _bulk(
    resources: Resources,
    admin: CurrentUser,
    data: BulkIn,
    action: str,
    applies_to: Iterable[JobStatus],
    act: Callable[[Job], str],
) -> BulkOut:
    wanted = data.filter
    statuses = tuple(s for s in applies_to if wanted.status in (None, s))
    picked = JobFilter(
        statuses=statuses,
        kind=wanted.kind,
        vendor=wanted.vendor,
        error_code=wanted.error_code,
        user_id=wanted.user_id,
        created_from=wanted.created_from,
        created_to=wanted.created_to,
    )
    found = resources.jobs.matching(picked, limit=data.limit) if statuses else []
    if data.dry_run:
        return BulkOut(action, True, len(found), 0, [job.id for job in found])
    done = []
    for job in found:
        try:
            done.append(act(job))
        except DomainError:  # it moved on meanwhile (ended, archiving): not this action's any more
            continue
    entry = AdminAction(action, msgspec.to_builtins(wanted), len(found), len(done), admin.id, datetime.now(UTC))
    AdminLog(resources.engine).record(entry)
    return BulkOut(action, False, len(found), len(done), done)
