"""The operators' console at `/console`, for admins only (every route behind `WebAuth.admin`).

Pages: queues (depth, oldest message, throughput over the last hour) and vendor slots, both live
(their scripts poll `/console/api/...` every 2 s); failure rates; job search with bulk retry and
cancel (dry run first); users; configuration with its audit trail; the monthly usage report. The
admin API itself is mounted again at `/console/v1/admin/...` (the same handlers as `/v1/admin`,
the session cookie standing for `Authorization`): the pages' scripts act through it, so a bulk
action or a user's disabling follows the API's rules. Reads the admin API lacks are infra/console.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from api.admin import AdminController, JobFilterIn
from api.auth import CurrentUser
from api.web.pages import json_router, page_router, render
from api.web.session import WebAuth
from domain.errors import InvalidInput, NotFound
from domain.jobs import JobKind, JobStatus
from infra import catalog, console, reports
from infra.config_store import ADJUSTABLE
from infra.jobstore import JobFilter
from infra.paging import is_id
from infra.resources import Resources
from workers.broker import NAMESPACE, QUEUES

Admin = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]

WINDOWS: Final = {1: "the last hour", 6: "the last 6 hours", 24: "the last 24 hours", 168: "the last 7 days"}
LONG_VALUES: Final = frozenset({"prices", "deadlines", "plans"})
CONFIG_GROUPS: Final[
    tuple[tuple[str, Callable[[str], bool]], ...]
] = (  # how the config page groups ADJUSTABLE; a key in none of them is under "Other"
    ("Vendor limits: jobs at once per (vendor, model)", lambda key: "concurrency" in key),
    ("Polling", lambda key: key.startswith("poll_")),
    ("Prices, plans and deadlines", lambda key: key in {"prices", "plans", "deadlines", "membership_days"}),
    ("Other", lambda key: True),
)
PAGES: Final = (
    ("/console", "Queues"),
    ("/console/slots", "Vendor slots"),
    ("/console/failures", "Failures"),
    ("/console/jobs", "Jobs"),
    ("/console/users", "Users"),
    ("/console/config", "Config"),
    ("/console/usage", "Usage"),
)


class JobPage(msgspec.Struct):
    items: list[console.JobRow]
    next_cursor: str | None
    filter: JobFilterIn  # as applied: the page sends it back for a bulk action, so both pick alike


def routers(auth: WebAuth) -> list[Router]:
    def page(request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any) -> Template:
        return render(auth, request, f"console/{template}", status=status, pages=PAGES, **context)

    def config(request: Request[Any, Any, Any], resources: Resources, **context: Any) -> Template:
        return page(
            request, "config.html", status=422 if context.get("failed") else 200, **_config(resources), **context
        )

    @get("/")
    async def queues_page(request: Request[Any, Any, Any]) -> Template:
        return page(request, "queues.html", queues=QUEUES)

    @get("/slots")
    async def slots_page(request: Request[Any, Any, Any]) -> Template:
        return page(request, "slots.html", reasons=console.REASONS)

    @get("/failures", sync_to_thread=True)
    def failures_page(request: Request[Any, Any, Any], resources: Res, hours: FromQuery[int] = 24) -> Template:
        hours = hours if hours in WINDOWS else 24
        found = console.failures(resources.engine, now=datetime.now(UTC), hours=hours)
        return page(request, "failures.html", vendors=found, hours=hours, windows=WINDOWS)

    @get("/jobs", sync_to_thread=True)
    def jobs_page(request: Request[Any, Any, Any], resources: Res) -> Template:
        vendors = sorted({room.split(":")[0] for room in catalog.slot_limits(resources.settings)})
        return page(
            request, "jobs.html", statuses=list(JobStatus), kinds=list(JobKind), vendors=vendors,
            query=dict(request.query_params),
        )  # fmt: skip

    @get("/users", sync_to_thread=True)
    def users_page(
        request: Request[Any, Any, Any],
        resources: Res,
        phone: FromQuery[str] = "",
        cursor: FromQuery[str | None] = None,
    ) -> Template:
        found, next_cursor = resources.accounts.search(phone=phone.strip() or None, limit=50, cursor=cursor or None)
        return page(request, "users.html", users=found, phone=phone, next_cursor=next_cursor)

    @get("/config", sync_to_thread=True)
    def config_page(request: Request[Any, Any, Any], resources: Res, saved: FromQuery[str] = "") -> Template:
        return config(request, resources, saved=saved if saved in ADJUSTABLE else "")

    @post("/config/{key:str}", status_code=303, sync_to_thread=True)
    def change_config(
        request: Request[Any, Any, Any],
        key: FromPath[str],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
        user: Admin,
        resources: Res,
    ) -> Redirect | Template:
        """A form's change, as `PUT /v1/admin/config/{key}` makes it: checked, stored, recorded."""
        try:
            resources.config.set(key, data.get("value", ""), base=resources.settings, by=user.id, now=datetime.now(UTC))
        except InvalidInput as exc:
            return config(request, resources, failed=(key, exc.message, data.get("value", "")))
        return Redirect(f"/console/config?saved={key}#cfg-{key}", status_code=303)

    @get("/usage", sync_to_thread=True)
    def usage_page(request: Request[Any, Any, Any], resources: Res, month: FromQuery[str] = "") -> Template:
        try:
            period = reports.Month.parse(month) if month.strip() else reports.Month.of(datetime.now(UTC))
        except InvalidInput as exc:
            return page(request, "usage.html", status=422, month=month, error=exc.message, rows=[], period=None)
        rows, stored_at = reports.report(resources.engine, period)
        return page(request, "usage.html", month=period.name, rows=rows, period=period, stored_at=stored_at)

    @get("/{rest:path}")
    async def unknown(rest: FromPath[str]) -> None:
        raise NotFound(f"no page /console{rest}")

    @get("/api/queues", sync_to_thread=True)
    def queues_data(resources: Res) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "at": now,
            "queues": console.queue_states(resources.redis, NAMESPACE, QUEUES, now=now.timestamp()),
            "throughput": console.throughput(resources.engine, now=now),
        }

    @get("/api/slots", sync_to_thread=True)
    def slots_data(resources: Res) -> dict[str, Any]:
        now = datetime.now(UTC)
        found = console.room_details(
            resources.effective(), resources.rooms, resources.accounts, resources.jobs, now=now
        )
        return {"at": now, "rooms": found}

    @get("/api/jobs", sync_to_thread=True)
    def jobs_data(request: Request[Any, Any, Any], resources: Res) -> JobPage:
        """Every user's jobs, newest first, by the filters of the bulk actions (dates are UTC days,
        both included; `user` is a user's id or phone)."""
        wanted = job_filter(resources, dict(request.query_params))
        picked = JobFilter(
            statuses=(wanted.status,) if wanted.status else (), kind=wanted.kind, vendor=wanted.vendor,
            error_code=wanted.error_code, user_id=wanted.user_id, created_from=wanted.created_from,
            created_to=wanted.created_to,
        )  # fmt: skip
        cursor = request.query_params.get("cursor") or None
        items, next_cursor = console.search_jobs(resources.engine, picked, limit=50, cursor=cursor)
        return JobPage(items, next_cursor, wanted)

    pages = [
        queues_page, slots_page, failures_page, jobs_page, users_page, config_page, change_config, usage_page,
        unknown,
    ]  # fmt: skip
    return [
        page_router(auth, "/console", pages, guards=[auth.admin]),
        json_router(auth, "/console", [AdminController, queues_data, slots_data, jobs_data], guards=[auth.admin]),
    ]


def job_filter(resources: Resources, query: dict[str, str]) -> JobFilterIn:
    """The job search form's fields as the admin API's filter; a field it cannot read is InvalidInput."""
    text = {name: value.strip() for name, value in query.items() if isinstance(value, str) and value.strip()}
    status, kind = text.get("status"), text.get("kind")
    if status is not None and status not in set(JobStatus):
        raise InvalidInput("status", f"there is no job status {status!r}")
    if kind is not None and kind not in set(JobKind):
        raise InvalidInput("kind", f"there is no job kind {kind!r}")
    start, end = _day(text.get("created_from"), "created_from"), _day(text.get("created_to"), "created_to")
    return JobFilterIn(
        status=JobStatus(status) if status else None,
        kind=JobKind(kind) if kind else None,
        vendor=text.get("vendor", "")[:32] or None,
        error_code=text.get("error_code", "")[:64] or None,
        user_id=_user_id(resources, text["user"]) if "user" in text else None,
        created_from=start,
        created_to=end + timedelta(days=1) if end else None,
    )


def _day(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, f"{text!r} is not a date like 2026-03-31") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _user_id(resources: Resources, text: str) -> str:
    """A user's id from their id or phone (as stored, or a mainland number without +86)."""
    if is_id(text) and resources.accounts.get(text) is not None:
        return text
    for phone in (text, f"+86{text}"):
        if (user := resources.accounts.by_phone(phone)) is not None:
            return user.id
    raise InvalidInput("user", f"no user has the id or phone {text!r}")


@dataclass(frozen=True)
class ConfigEntry:
    key: str
    value: str  # in effect now
    default: str  # from the environment
    overridden: bool
    long: bool  # edited in a text area


def _config(resources: Resources) -> dict[str, Any]:
    """The settings an admin may change (as `GET /v1/admin/config` lists them) and who changed what."""
    base = resources.settings
    effective, overridden = resources.config.effective(base), resources.config.overrides()
    groups: dict[str, list[ConfigEntry]] = {title: [] for title, _ in CONFIG_GROUPS}
    for key in sorted(ADJUSTABLE):
        title = next(title for title, holds in CONFIG_GROUPS if holds(key))
        value, default = str(getattr(effective, key)), str(getattr(base, key))
        groups[title].append(ConfigEntry(key, value, default, key in overridden, key in LONG_VALUES))
    changes = resources.config.history(limit=100)
    admins = {c.changed_by: resources.accounts.get(c.changed_by) for c in changes}
    by = {i: u.phone if u else i for i, u in admins.items()}
    return {"groups": [(t, e) for t, e in groups.items() if e], "changes": changes, "by": by}
