"""The operators' console (/console) in-process: admins only on every route (walked from the app, so
a new route is covered without touching this file), CSRF on every action, the pages render, and what
its own reads say (queues, throughput, failures, slots, the job search) agrees with the engine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from sqlalchemy import func, select, update

from infra import console, waiting
from infra.db import jobs
from infra.resources import Resources, redis_url
from infra.rooms import Entry
from tests.api.web_support import csrf_of, sign_in
from tests.support import auth, make_user, pose12_body
from workers.broker import NAMESPACE, redis_broker

Client = TestClient[Litestar]
PARAM = re.compile(r"\{(\w+):(\w+)\}")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def console_routes(client: Client) -> list[tuple[str, str]]:
    """(method, a concrete path) of every route the app serves under /console."""
    app = client.app
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not (route.path == "/console" or route.path.startswith("/console/")):
            continue
        path = PARAM.sub(lambda m: "some/page" if m[2] == "path" else "x" + m[1], route.path)
        found += [(method, path) for method in sorted(route.methods - {"OPTIONS", "HEAD"})]
    return found


def call(client: Client, method: str, path: str, token: str | None) -> Any:
    headers = {"X-CSRF-Token": token} if token else {}
    body = {} if method in UNSAFE else None
    return client.request(method, path, headers=headers, follow_redirects=False, json=body)


@pytest.fixture
def admin(api: Client, resources: Resources) -> Iterator[str]:
    """Signed in as an admin: the CSRF token of the pages."""
    user = resources.accounts.create_user("+8613900000001", 0, now=datetime.now(UTC), role="admin")
    yield sign_in(api, resources, user.user_id, role="admin")


def test_the_console_serves_its_pages_actions_and_the_admin_api(api: Client) -> None:
    routes = set(console_routes(api))

    assert {("GET", "/console"), ("GET", "/console/slots"), ("GET", "/console/api/slots")} <= routes
    assert ("POST", "/console/config/xkey") in routes
    assert ("POST", "/console/v1/admin/jobs/retry") in routes
    assert len(routes) >= 20


def test_a_signed_in_user_who_is_not_an_admin_gets_403_on_every_console_route(
    api: Client, resources: Resources
) -> None:
    user = make_user(resources, 10)
    token = sign_in(api, resources, user.user_id)

    answers = {(method, path): call(api, method, path, token) for method, path in console_routes(api)}

    assert {key: a.status_code for key, a in answers.items() if a.status_code != 403} == {}
    pages = [
        a for (method, path), a in answers.items() if method == "GET" and "/v1/" not in path and "/api/" not in path
    ]
    assert pages and all("administrators only" in a.text for a in pages)


def test_a_visitor_without_a_session_is_sent_to_sign_in_or_answered_401_on_every_console_route(
    api: Client,
) -> None:
    token = csrf_of(api.get("/app/login").text)  # a browser's own token: the session is what lacks

    answers = {(method, path): call(api, method, path, token) for method, path in console_routes(api)}

    refused = {key: a.status_code for key, a in answers.items()}
    assert set(refused.values()) <= {303, 401}, refused
    assert answers["GET", "/console/jobs"].headers["location"] == "/app/login?next=/console/jobs"
    assert answers["GET", "/console/api/slots"].status_code == 401


def test_every_console_page_renders_for_an_admin_at_phone_width_with_labelled_controls(api: Client, admin: str) -> None:
    pages = [p for m, p in console_routes(api) if m == "GET" and "/v1/" not in p and "/api/" not in p]
    answers = {path: api.get(path) for path in pages}

    unknown = answers.pop("/console/some/page")
    assert {path: a.status_code for path, a in answers.items()} == dict.fromkeys(answers, 200)
    assert unknown.status_code == 404 and "We could not find this page" in unknown.text
    assert 'href="/console"' in unknown.text and 'href="/app"' not in unknown.text.split("<main", 1)[-1]
    for path, answer in answers.items():
        assert 'name="viewport" content="width=device-width' in answer.text, path
        ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', answer.text))
        labelled = set(re.findall(r'<label for="([^"]+)"', answer.text))
        assert ids <= labelled, (path, ids - labelled)


def test_a_form_action_without_the_csrf_token_is_refused_and_changes_nothing(
    api: Client, resources: Resources, admin: str
) -> None:
    forged = api.post("/console/config/runninghub_concurrency", data={"value": "1"}, follow_redirects=False)
    wrong = api.post(
        "/console/config/runninghub_concurrency", data={"value": "1", "csrf_token": "0" * 64}, follow_redirects=False
    )
    unchanged = resources.config.overrides()
    made = api.post(
        "/console/config/runninghub_concurrency", data={"value": "1", "csrf_token": admin}, follow_redirects=False
    )

    assert forged.status_code == 403 and wrong.status_code == 403
    assert "another site" in forged.text
    assert unchanged == {}
    assert made.status_code == 303 and made.headers["location"].startswith("/console/config?saved=")
    assert resources.config.overrides() == {"runninghub_concurrency": "1"}
    assert [c.key for c in resources.config.history()] == ["runninghub_concurrency"]


def test_a_json_action_without_the_csrf_header_is_refused_and_changes_nothing(
    api: Client, resources: Resources, admin: str
) -> None:
    user = make_user(resources, 10)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    with resources.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="failed", error_code="vendor_failed"))
    bulk = {"filter": {"status": "failed"}, "dry_run": False}

    retried = api.post("/console/v1/admin/jobs/retry", json=bulk)
    configured = api.put("/console/v1/admin/config/ci_concurrency", json={"value": "2"})
    disabled = api.post(f"/console/v1/admin/users/{user.user_id}/disable")

    assert [retried.status_code, configured.status_code, disabled.status_code] == [403, 403, 403]
    assert retried.json()["error"]["code"] == "forbidden"
    assert _count(resources) == 1
    assert resources.config.overrides() == {}
    found = resources.accounts.get(user.user_id)
    assert found is not None and found.disabled_at is None


def test_a_config_value_that_does_not_parse_is_shown_in_words_and_not_stored(
    api: Client, resources: Resources, admin: str
) -> None:
    answer = api.post("/console/config/ci_concurrency", data={"value": "lots", "csrf_token": admin})

    assert answer.status_code == 422
    assert "Not saved" in answer.text and "ci_concurrency" in answer.text
    assert 'value="lots"' in answer.text  # what was typed stays, to be corrected
    assert resources.config.overrides() == {}


def test_the_usage_page_says_what_is_wrong_with_a_month(api: Client, admin: str) -> None:
    answer = api.get("/console/usage?month=March")

    assert answer.status_code == 422 and "month is YYYY-MM" in answer.text


def test_the_queues_show_depth_and_the_oldest_ready_message(resources: Resources, redis_client: Any) -> None:
    broker = redis_broker(redis_url(resources.settings))
    broker.declare_queue("polling")
    old = int((datetime.now(UTC) - timedelta(seconds=90)).timestamp() * 1000)
    for stamp in (old, old + 30_000):
        broker.enqueue(dramatiq.Message("polling", "polls.poll", (), {}, {}, message_timestamp=stamp))

    found = {q.name: q for q in console.queue_states(redis_client, NAMESPACE, ["polling", "webhooks"], now=_now())}

    assert found["polling"].ready == 2 and found["polling"].delayed == 0
    assert 89 <= (found["polling"].oldest_s or 0) <= 120
    assert found["webhooks"] == console.QueueState("webhooks", 0, 0, None)


def test_throughput_counts_the_jobs_that_ended_in_each_five_minutes_by_kind_and_vendor(
    api: Client, resources: Resources
) -> None:
    now = datetime.now(UTC)
    user = make_user(resources, 20)
    for minutes_ago, status in ((2, "succeeded"), (3, "failed"), (58, "succeeded"), (70, "succeeded")):
        _ended(api, resources, user, status, now - timedelta(minutes=minutes_ago))

    found = console.throughput(resources.engine, now=now)

    (row,) = found.rows
    assert (row.kind, row.vendor, row.succeeded, row.failed) == ("model_pose12", "runninghub", 2, 1)
    assert len(row.finished) == 12 and row.finished[-1] == 2 and row.finished[0] == 1 and sum(row.finished) == 3


def test_failure_rates_are_by_vendor_and_error_code_over_the_window(api: Client, resources: Resources) -> None:
    now = datetime.now(UTC)
    user = make_user(resources, 20)
    for status, code in (("failed", "vendor_failed"), ("failed", "vendor_failed"), ("timed_out", "timeout")):
        _ended(api, resources, user, status, now - timedelta(minutes=10), code=code)
    _ended(api, resources, user, "succeeded", now - timedelta(minutes=10))
    _ended(api, resources, user, "cancelled", now - timedelta(minutes=10))
    _ended(api, resources, user, "failed", now - timedelta(hours=2), code="old")

    (found,) = console.failures(resources.engine, now=now, hours=1)

    assert (found.vendor, found.finished, found.succeeded, found.failed, found.cancelled) == ("runninghub", 5, 1, 3, 1)
    assert found.rate == 0.75
    assert found.codes == (("vendor_failed", 2), ("timeout", 1))


def test_the_job_search_filters_like_the_bulk_actions_and_hands_them_its_filter(
    api: Client, resources: Resources, admin: str
) -> None:
    user, other = make_user(resources, 20), make_user(resources, 20, phone="13800000009")
    mine = [_ended(api, resources, user, "failed", datetime.now(UTC), code="vendor_failed") for _ in range(2)]
    _ended(api, resources, user, "failed", datetime.now(UTC), code="other_code")
    _ended(api, resources, other, "failed", datetime.now(UTC), code="vendor_failed")
    today = datetime.now(UTC).date().isoformat()

    page = api.get(f"/console/api/jobs?user=13800000000&vendor=runninghub&error_code=vendor_failed&created_to={today}")
    dry = api.post(
        "/console/v1/admin/jobs/retry", json={"filter": page.json()["filter"]}, headers={"X-CSRF-Token": admin}
    )
    bad = api.get("/console/api/jobs?created_from=yesterday")

    assert page.status_code == 200, page.text
    assert sorted(j["id"] for j in page.json()["items"]) == sorted(mine)
    assert {j["phone"] for j in page.json()["items"]} == {"13800000000"}
    assert dry.json()["dry_run"] is True and sorted(dry.json()["job_ids"]) == sorted(mine)
    assert bad.status_code == 422 and "is not a date" in bad.json()["error"]["message"]


def test_the_slot_view_shows_the_holders_and_why_each_job_waits_as_the_job_itself_is_told(
    api: Client, resources: Resources
) -> None:
    room = "runninghub:pose12"
    capped, free = make_user(resources, 20), make_user(resources, 20, phone="13800000009", plan="pro")
    holding = _job(api, capped)
    with resources.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == holding).values(status="processing", admitted_at=func.now()))
    resources.rooms.rebuild(room, [f"{holding}:1"], [])
    waiters = [_job(api, capped), _job(api, free), _job(api, free)]
    for job_id in waiters:
        job = resources.jobs.get(job_id)
        assert job is not None
        resources.rooms.enqueue(room, Entry(job.id, job.user_id, job.priority, job.created_at.timestamp()))

    (found,) = [r for r in console.room_details(resources.effective(), resources.rooms, resources.accounts,
                                                resources.jobs, now=datetime.now(UTC)) if r.room == room]  # fmt: skip
    told = {job_id: _queue_info(resources, job_id) for job_id in waiters}

    assert [(h.job_id, h.phone, h.status) for h in found.holders] == [(holding, "13800000000", "processing")]
    assert {w.job_id: (w.reason, w.position) for w in found.first} == told
    assert found.by_reason == {
        "vendor_slots": 2, "plan_concurrency": 1, "vendor_busy": 0, "degraded": 0, "paused": 0,
    }  # fmt: skip
    assert [(u.phone, u.waiting) for u in found.by_user] == [("13800000009", 2), ("13800000000", 1)]


def test_a_paused_room_makes_its_waiters_vendor_busy_as_the_job_itself_is_told(
    api: Client, resources: Resources
) -> None:
    room = "runninghub:pose12"
    user = make_user(resources, 20, plan="pro")
    job_id = _job(api, user)
    job = resources.jobs.get(job_id)
    assert job is not None
    resources.rooms.enqueue(room, Entry(job.id, job.user_id, job.priority, job.created_at.timestamp()))
    resources.rooms.pause(room, ms=60_000)

    details = console.room_details(
        resources.effective(), resources.rooms, resources.accounts, resources.jobs, now=_at()
    )
    (found,) = [r for r in details if r.room == room]

    assert [(w.reason, w.position) for w in found.first] == [_queue_info(resources, job_id)] == [("vendor_busy", 1)]
    assert found.paused_ms > 0


# --- helpers -------------------------------------------------------------------------------------------


def _job(api: Client, user: Any) -> str:
    answer = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _ended(api: Client, resources: Resources, user: Any, status: str, at: datetime, code: str | None = None) -> str:
    job_id = _job(api, user)
    values = {"status": status, "finished_at": at, "updated_at": at, "error_code": code}
    with resources.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
    return job_id


def _queue_info(resources: Resources, job_id: str) -> tuple[str, int]:
    job = resources.jobs.get(job_id)
    assert job is not None
    info = waiting.queue_info(
        resources.effective(), resources.rooms, resources.accounts, resources.jobs, job, now=_at()
    )
    assert info is not None
    return info.reason, info.position


def _count(resources: Resources) -> int:
    with resources.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


def _at() -> datetime:
    return datetime.now(UTC)


def _now() -> float:
    return datetime.now(UTC).timestamp()
