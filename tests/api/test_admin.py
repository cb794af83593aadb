"""`/v1/admin` over a real database: admins only, audited configuration, searches and usage."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import TestClient
from sqlalchemy import func, select

from api.admin import AdminController
from api.auth import current_user
from api.errors import HANDLERS
from domain.jobs import JobKind, JobStatus
from infra.accounts import NewUser
from infra.catalog import price_list, slot_limits
from infra.config_store import ADJUSTABLE, ConfigStore
from infra.db import config_changes, config_overrides
from infra.jobstore import NewJob
from infra.resources import Resources
from tests.support import POSE12_INPUT, auth

Client = TestClient[Litestar]
S = JobStatus
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
VIDEO_INPUT = {"prompt": "a cat", "model": "sora-2", "resolution": "720p", "duration": 10}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def config(resources: Resources) -> ConfigStore:
    return ConfigStore(resources.engine)


@pytest.fixture
def admin_api(resources: Resources, config: ConfigStore) -> Iterator[Client]:
    """The admin controller with the dependencies `api.app.create_app` gives it."""
    app = Litestar(
        route_handlers=[AdminController],
        dependencies={
            "resources": Provide(lambda: resources, sync_to_thread=False),
            "user": Provide(current_user, sync_to_thread=True),
            "config": Provide(lambda: config, sync_to_thread=False),
            "prices": Provide(lambda: price_list(resources.effective()), sync_to_thread=False),
        },
        exception_handlers=HANDLERS,
    )
    with TestClient(app=app) as client:
        yield client


@pytest.fixture
def admin(resources: Resources) -> NewUser:
    return resources.accounts.create_user("10000000000", 0, now=T0 - timedelta(days=30), role="admin")


@pytest.fixture
def someone(resources: Resources) -> NewUser:
    return resources.accounts.create_user("10000000001", 100, now=T0 - timedelta(days=30))


def new_job(resources: Resources, user: NewUser, kind: JobKind, at: datetime, price: int = 1) -> str:
    job_input: dict[str, Any] = VIDEO_INPUT if kind is JobKind.VIDEO else POSE12_INPUT
    job_id = f"job{at:%m%d%H%M%S}{kind.value[:6]}{user.user_id[:8]}"
    resources.jobs.create(
        NewJob(
            id=job_id,
            user_id=user.user_id,
            kind=kind,
            status=S.QUEUED,
            input=job_input,
            price=price,
            vendor="sim",
            model="sim",
            deadline_at=at + timedelta(hours=1),
        ),
        now=at,
    )
    return job_id


def walk(resources: Resources, job_id: str, path: list[JobStatus], at: datetime) -> None:
    for current, target in itertools.pairwise(path):
        assert resources.jobs.move(job_id, current, target, now=at)


def succeed(resources: Resources, job_id: str, at: datetime) -> None:
    walk(resources, job_id, [S.QUEUED, S.SUBMITTING, S.PROCESSING, S.ARCHIVING, S.SUCCEEDED], at)


def fail(resources: Resources, job_id: str, at: datetime) -> None:
    walk(resources, job_id, [S.QUEUED, S.SUBMITTING, S.PROCESSING, S.FAILED], at)
    assert resources.jobs.refund(job_id, now=at)


def recorded(resources: Resources) -> tuple[int, int]:
    with resources.engine.connect() as conn:
        changes = conn.execute(select(func.count()).select_from(config_changes)).scalar_one()
        overrides = conn.execute(select(func.count()).select_from(config_overrides)).scalar_one()
    return int(changes), int(overrides)


ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/admin/users", None),
    ("GET", "/v1/admin/jobs", None),
    ("GET", "/v1/admin/config", None),
    ("PUT", "/v1/admin/config/runninghub_concurrency", {"value": "1"}),
    ("PUT", "/v1/admin/config/runninghub_concurrency", {"nonsense": True}),
    ("GET", "/v1/admin/config/changes", None),
    ("GET", "/v1/admin/usage?month=2026-03", None),
    ("GET", "/v1/admin/scheduler", None),
    ("POST", "/v1/admin/users/{user_id:str}/disable", None),
    ("POST", "/v1/admin/users/{user_id:str}/enable", None),
    ("POST", "/v1/admin/jobs/retry", {"filter": {}}),
    ("POST", "/v1/admin/jobs/cancel", {"filter": {}}),
    ("GET", "/v1/admin/actions", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_non_admin_gets_403_on_every_admin_endpoint(
    admin_api: Client, resources: Resources, someone: NewUser, method: str, path: str, body: dict[str, Any] | None
) -> None:
    resp = admin_api.request(method, path, json=body, headers=auth(someone))

    assert resp.status_code == 403
    assert resp.json() == {"error": {"code": "forbidden", "message": "this needs the admin role", "details": {}}}
    assert recorded(resources) == (0, 0)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_no_key_gets_401_on_every_admin_endpoint(
    admin_api: Client, resources: Resources, method: str, path: str, body: dict[str, Any] | None
) -> None:
    resp = admin_api.request(method, path, json=body)

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert recorded(resources) == (0, 0)


def test_every_admin_route_is_in_the_403_list(admin_api: Client) -> None:
    routes = {(m, r.path) for r in admin_api.app.routes for m in r.methods if r.path.startswith("/v1/admin")}
    listed = {
        (method, path.split("?")[0].replace("runninghub_concurrency", "{key:str}")) for method, path, _ in ENDPOINTS
    }

    assert {(m, p) for m, p in routes if m not in ("HEAD", "OPTIONS")} == listed


def test_an_admins_limit_change_is_recorded_and_reaches_the_next_job_elsewhere(
    admin_api: Client, resources: Resources, config: ConfigStore, admin: NewUser
) -> None:
    settings = resources.settings.with_(runninghub_concurrency=3)
    resources.settings = settings
    clock = Clock()
    worker = ConfigStore(resources.engine, cache_s=1.0, clock=clock)  # another process's view
    assert slot_limits(worker.effective(settings))["runninghub:pose12"] == 3

    resp = admin_api.put("/v1/admin/config/runninghub_concurrency", json={"value": "1"}, headers=auth(admin))

    assert resp.status_code == 200
    change = resp.json()
    assert {k: change[k] for k in ("key", "old_value", "new_value", "changed_by")} == {
        "key": "runninghub_concurrency",
        "old_value": "3",
        "new_value": "1",
        "changed_by": admin.user_id,
    }
    assert datetime.fromisoformat(change["changed_at"]).utcoffset() == timedelta(0)
    history = admin_api.get("/v1/admin/config/changes?key=runninghub_concurrency", headers=auth(admin)).json()
    assert history == [change]
    entries = {e["key"]: e for e in admin_api.get("/v1/admin/config", headers=auth(admin)).json()}
    assert set(entries) == ADJUSTABLE
    assert entries["runninghub_concurrency"] == {
        "key": "runninghub_concurrency",
        "value": "1",
        "default": "3",
        "overridden": True,
    }
    assert entries["ci_concurrency"]["overridden"] is False
    clock.now += 1.0
    assert slot_limits(worker.effective(settings))["runninghub:pose12"] == 1


def test_an_admins_price_change_changes_the_quote(
    admin_api: Client, resources: Resources, config: ConfigStore, admin: NewUser
) -> None:
    prices = "basic_clean=2,model_pose12=4,model_3d=5,video/sora-2=30"

    resp = admin_api.put("/v1/admin/config/prices", json={"value": prices}, headers=auth(admin))

    assert resp.status_code == 200
    assert resp.json()["old_value"] == resources.settings.prices
    effective = price_list(config.effective(resources.settings))
    assert effective.quote(JobKind.MODEL_POSE12, POSE12_INPUT).price == 4
    assert effective.quote(JobKind.VIDEO, VIDEO_INPUT).price == 30


@pytest.mark.parametrize(
    ("key", "body", "field"),
    [
        ("prices", {"value": "basic_clean=free"}, "value"),
        ("runninghub_concurrency", {"value": "-2"}, "value"),
        ("no_such_setting", {"value": "1"}, "key"),
        ("jwt_secret", {"value": "x"}, "key"),
        ("poll_schedule_video_720p", {"value": "3s,then 5s"}, "value"),
        ("plans", {"value": "free:0:0:1:5,pro:99yuan:100:3:15"}, "value"),
        ("plans", {}, "value"),
        ("plans", {"value": 5}, "value"),
    ],
)
def test_an_invalid_change_is_422_naming_the_field_and_records_nothing(
    admin_api: Client, resources: Resources, admin: NewUser, key: str, body: dict[str, Any], field: str
) -> None:
    resp = admin_api.put(f"/v1/admin/config/{key}", json=body, headers=auth(admin))

    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_input"
    assert resp.json()["error"]["details"]["field"] == field
    assert recorded(resources) == (0, 0)


def test_users_are_searched_by_phone_and_role_newest_first_page_by_page(
    admin_api: Client, resources: Resources, admin: NewUser
) -> None:
    made = [
        resources.accounts.create_user(f"1380000000{i}", i, now=T0 + timedelta(minutes=i)).user_id for i in range(5)
    ]
    resources.accounts.create_user("13900000000", 0, now=T0 + timedelta(hours=1))

    pages, cursor = [], None
    while True:
        query = "phone=138&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = admin_api.get(f"/v1/admin/users?{query}", headers=auth(admin)).json()
        pages.append([u["id"] for u in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == [[made[4], made[3]], [made[2], made[1]], [made[0]]]
    first = admin_api.get("/v1/admin/users?phone=13800000003", headers=auth(admin)).json()["items"]
    assert [(u["phone"], u["role"], u["balance"], u["plan"]) for u in first] == [("13800000003", "user", 3, None)]
    admins = admin_api.get("/v1/admin/users?role=admin", headers=auth(admin)).json()["items"]
    assert [u["id"] for u in admins] == [admin.user_id]


def test_jobs_are_searched_across_users_by_owner_status_and_kind_page_by_page(
    admin_api: Client, resources: Resources, admin: NewUser, someone: NewUser
) -> None:
    other = resources.accounts.create_user("10000000002", 100, now=T0)
    mine = [new_job(resources, someone, JobKind.MODEL_POSE12, T0 + timedelta(minutes=i)) for i in range(5)]
    for job_id in mine[:3]:
        succeed(resources, job_id, T0 + timedelta(hours=1))
    new_job(resources, someone, JobKind.VIDEO, T0 + timedelta(minutes=10), price=15)
    theirs = new_job(resources, other, JobKind.MODEL_POSE12, T0 + timedelta(minutes=20))
    fail(resources, theirs, T0 + timedelta(hours=1))

    pages, cursor = [], None
    while True:
        query = f"user_id={someone.user_id}&status=succeeded&kind=model_pose12&limit=2"
        page = admin_api.get(f"/v1/admin/jobs?{query}" + (f"&cursor={cursor}" if cursor else ""), headers=auth(admin))
        pages.append([j["id"] for j in page.json()["items"]])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert pages == [[mine[2], mine[1]], [mine[0]]]
    everyone = admin_api.get("/v1/admin/jobs?kind=model_pose12", headers=auth(admin)).json()["items"]
    assert [j["id"] for j in everyone] == [theirs, *reversed(mine)]
    failed = admin_api.get("/v1/admin/jobs?status=failed", headers=auth(admin)).json()["items"]
    assert [(j["id"], j["user_id"], j["price"], j["status"]) for j in failed] == [(theirs, other.user_id, 1, "failed")]
    assert admin_api.get("/v1/admin/jobs?status=exploded", headers=auth(admin)).status_code == 422
    bad_cursor = admin_api.get("/v1/admin/jobs?cursor=not-ours", headers=auth(admin))
    assert (bad_cursor.status_code, bad_cursor.json()["error"]["details"]["field"]) == (422, "cursor")


def test_usage_counts_one_month_per_user_and_kind(
    admin_api: Client, resources: Resources, admin: NewUser, someone: NewUser
) -> None:
    other = resources.accounts.create_user("10000000002", 100, now=T0 - timedelta(days=30))
    good = new_job(resources, someone, JobKind.MODEL_POSE12, T0)
    succeed(resources, good, T0 + timedelta(minutes=5))
    video = new_job(resources, someone, JobKind.VIDEO, T0 + timedelta(days=1), price=15)
    fail(resources, video, T0 + timedelta(days=1, minutes=5))
    late = new_job(resources, someone, JobKind.MODEL_POSE12, datetime(2026, 2, 28, 23, 50, tzinfo=UTC))
    fail(resources, late, datetime(2026, 3, 1, 0, 10, tzinfo=UTC))  # charged in February, refunded in March
    new_job(resources, someone, JobKind.MODEL_POSE12, datetime(2026, 4, 1, tzinfo=UTC))  # April
    cancelled = new_job(resources, other, JobKind.BASIC_CLEAN, datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    assert resources.jobs.move(cancelled, S.QUEUED, S.CANCELLED, now=datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC))
    assert resources.jobs.refund(cancelled, now=datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC))

    resp = admin_api.get("/v1/admin/usage?month=2026-03", headers=auth(admin))

    assert resp.status_code == 200
    report = resp.json()
    assert (report["month"], report["start"][:10], report["end"][:10]) == ("2026-03", "2026-03-01", "2026-04-01")
    rows = {(r["user_id"], r["kind"]): r for r in report["items"]}
    assert rows == {
        (someone.user_id, "model_pose12"): usage(
            someone, "model_pose12", submitted=1, succeeded=1, failed=1, charged=1, refunded=1
        ),
        (someone.user_id, "video"): usage(someone, "video", submitted=1, failed=1, charged=15, refunded=15),
        (other.user_id, "basic_clean"): usage(
            other, "basic_clean", submitted=1, failed=1, charged=1, refunded=1, phone="10000000002"
        ),
    }
    february = admin_api.get("/v1/admin/usage?month=2026-02", headers=auth(admin)).json()["items"]
    assert [(r["kind"], r["submitted"], r["failed"], r["credits_charged"]) for r in february] == [
        ("model_pose12", 1, 0, 1)
    ]


def usage(
    user: NewUser,
    kind: str,
    *,
    submitted: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    charged: int = 0,
    refunded: int = 0,
    phone: str = "10000000001",
) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "phone": phone,
        "kind": kind,
        "submitted": submitted,
        "succeeded": succeeded,
        "failed": failed,
        "batches": 0,
        "batch_jobs": 0,
        "credits_charged": charged,
        "credits_refunded": refunded,
    }


@pytest.mark.parametrize("month", ["2026-13", "2026-3", "March", "2026-03-01", "0000-01"])
def test_a_malformed_month_is_422_naming_month(admin_api: Client, admin: NewUser, month: str) -> None:
    resp = admin_api.get(f"/v1/admin/usage?month={month}", headers=auth(admin))

    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["field"] == "month"
