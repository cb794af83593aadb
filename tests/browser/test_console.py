"""The operators' console (/console) in Debian's Chromium against `genq run`, as an admin: a job seen
holding a vendor slot while another waits (`vendor_slots`), live; failed jobs found and retried in
bulk after a dry run; every console page, each saved as a screenshot (tests/browser/conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import REPO, Web, new_phone, sim_config
from tests.integration.test_genq_run import Stack
from tests.support import wait_for

NO_RELOAD = "window.__stillHere = 'yes'"  # set once; a reload or navigation would lose it
ROOM = "runninghub:pose12"
README_SHOT = REPO / "docs" / "console.png"


def _user(stack: Stack, credits: int, *, admin: bool = False) -> tuple[str, dict[str, str]]:
    """A user made by `genq users create`, who signs in by this phone; (phone, API auth headers)."""
    phone = new_phone()
    args = ["users", "create", "--phone", phone, "--credits", str(credits), *(["--admin"] if admin else [])]
    made = json.loads(stack.genq(*args))
    return phone, {"Authorization": f"Bearer {made['api_key']}"}


def _pose12(stack: Stack, headers: dict[str, str]) -> str:
    image = stack.lines["sample image"]
    body = {"kind": "model_pose12", "input": {"image_url": image, "scene": "street", "category": "dress"}}
    return str(httpx.post(f"{stack.api}/v1/jobs", json=body, headers=headers).raise_for_status().json()["id"])


def _job(stack: Stack, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{stack.api}/v1/jobs/{job_id}", headers=headers).raise_for_status().json()
    return answer


def _buy_pro(stack: Stack, headers: dict[str, str]) -> None:
    """Three jobs at once (the Pro plan): the user's own cap is not what holds a second job back."""
    order = {"plan": "pro", "channel": "wechat"}
    httpx.post(f"{stack.api}/v1/orders", json=order, headers=headers).raise_for_status()

    def member() -> bool | None:
        return httpx.get(f"{stack.api}/v1/membership", headers=headers).json().get("plan") == "pro" or None

    wait_for(member, timeout_s=30, what="the Pro plan to be paid")


@contextmanager
def _config(stack: Stack, admin: dict[str, str], key: str) -> Iterator[None]:
    """Put `key` back as it was, through the admin API, however the test ends."""
    entries = httpx.get(f"{stack.api}/v1/admin/config", headers=admin).raise_for_status().json()
    before = next(e["value"] for e in entries if e["key"] == key)
    try:
        yield
    finally:
        httpx.put(f"{stack.api}/v1/admin/config/{key}", json={"value": before}, headers=admin).raise_for_status()


def test_the_slot_view_shows_a_job_holding_the_only_slot_and_one_waiting_for_it_live(web: Web) -> None:
    stack, page = web.stack, web.page
    admin_phone, admin = _user(stack, 0, admin=True)
    _, user = _user(stack, 0)
    _buy_pro(stack, user)
    web.sign_in(admin_phone)
    slow = sim_config(stack, "sim-runninghub", running_s=120)
    jobs: list[str] = []
    try:
        with _config(stack, admin, "runninghub_concurrency"):
            web.visit("/console/config", "console-config")
            page.locator("#value-runninghub_concurrency").fill("1")
            page.get_by_role("button", name="Save runninghub_concurrency").click()
            expect(page.locator("#config-saved")).to_contain_text("runninghub_concurrency")
            expect(page.locator("#audit-table tbody tr").first).to_contain_text("runninghub_concurrency")
            web.shot("console-config-saved")

            web.visit("/console/slots", "console-slots-empty")
            summary = page.locator(f'#rooms-summary tr[data-room="{ROOM}"]')
            room = page.locator(f'section[data-room="{ROOM}"]')  # a room's own card, while it has jobs
            expect(summary.locator(".limit")).to_have_text("1")
            expect(summary.locator(".in-flight")).to_have_text("0 of 1")
            expect(room).to_have_count(0)
            page.evaluate(NO_RELOAD)

            jobs += [_pose12(stack, user), _pose12(stack, user)]

            holder = room.locator(".holders tbody tr[data-job]")
            waiter = room.locator(".waiters tbody tr[data-job]")
            expect(holder).to_have_count(1, timeout=30_000)
            expect(waiter).to_have_count(1)
            running, queued = holder.get_attribute("data-job"), waiter.get_attribute("data-job")
            assert {running, queued} == set(jobs)
            expect(waiter.locator(".reason")).to_have_text("vendor_slots")
            expect(room.locator('.reasons [data-reason="vendor_slots"]')).to_have_text("vendor_slots: 1")
            expect(room.locator(".in-flight")).to_have_text("1 of 1")
            expect(summary.locator('[data-reason="vendor_slots"]')).to_have_text("1")
            expect(holder).to_contain_text(re.compile(r"submitting|processing"))
            assert page.evaluate("window.__stillHere") == "yes"  # it all arrived without a reload
            assert _job(stack, user, str(queued))["queue"]["reason"] == "vendor_slots"  # as the job is told
            web.shot("console-slots-holding")
            page.screenshot(path=str(README_SHOT), full_page=False)
    finally:
        for job_id in jobs:
            httpx.post(f"{stack.api}/v1/jobs/{job_id}/cancel", headers=user)
        sim_config(stack, "sim-runninghub", **slow)


def test_failed_jobs_are_found_and_retried_in_bulk_after_a_dry_run(web: Web) -> None:
    stack, page = web.stack, web.page
    admin_phone, _ = _user(stack, 0, admin=True)
    phone, user = _user(stack, 10)
    failing = sim_config(stack, "sim-runninghub", job_fail_rate=1)
    try:
        failed = [_pose12(stack, user), _pose12(stack, user)]
        for job_id in failed:
            wait_for(
                lambda j=job_id: _job(stack, user, j)["status"] == "failed" or None, timeout_s=60, what="a failure"
            )
    finally:
        sim_config(stack, "sim-runninghub", **failing)
    web.sign_in(admin_phone)

    web.visit("/console/jobs", "console-jobs")
    page.get_by_label("User (id or phone)").fill(phone)
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#jobs-table tbody tr[data-job]")
    expect(rows).to_have_count(2)
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.job)")) == sorted(failed)
    web.shot("console-jobs-failed")

    page.get_by_role("button", name="Retry matching jobs…").click()
    expect(page.locator("#bulk-question")).to_have_text(re.compile(r"^Retry 2 jobs\? Dry run: 2 jobs would be retried"))
    assert [_job(stack, user, j)["status"] for j in failed] == ["failed", "failed"]  # a dry run does nothing
    web.shot("console-bulk-dry-run")
    page.get_by_role("button", name="Retry 2 jobs").click()
    expect(page.locator("#bulk-result")).to_have_text("2 of 2 jobs retried.")
    made = page.locator("#bulk-new li[data-job]")
    expect(made).to_have_count(2)
    web.shot("console-bulk-retried")

    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Search").click()
    retries = page.locator("#jobs-table tbody tr[data-job]:not([data-retry-of=''])")
    expect(retries).to_have_count(2)
    assert sorted(retries.evaluate_all("rows => rows.map(r => r.dataset.retryOf)")) == sorted(failed)
    assert sorted(retries.evaluate_all("rows => rows.map(r => r.dataset.job)")) == sorted(
        made.evaluate_all("items => items.map(i => i.dataset.job)")
    )
    web.shot("console-jobs-retries")


def test_every_console_page_opens_for_an_admin_and_fits_a_phone(web: Web) -> None:
    stack, page = web.stack, web.page
    admin_phone, _ = _user(stack, 0, admin=True)
    phone, _ = _user(stack, 3)
    web.sign_in(admin_phone)

    web.visit("/console", "console-queues")
    expect(page.locator('#queues-table tr[data-queue="generation"] td').first).not_to_have_text("…")
    expect(page.locator("#queues-updated")).to_contain_text("Updated")
    for path, heading in [
        ("/console/slots", "Vendor slots"),
        ("/console/failures", "Failure rates"),
        ("/console/jobs", "Jobs"),
        ("/console/users", "Users"),
        ("/console/config", "Configuration"),
        ("/console/usage", "Monthly usage"),
    ]:
        web.visit(path, f"console-{path.rsplit('/', 1)[-1]}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()

    _disable_and_enable(web, page, phone)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/console", "/console/slots", "/console/jobs", "/console/users", "/console/config"):
        web.visit(path, f"phone-{path.rsplit('/', 1)[-1]}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path  # nothing runs off the screen


def _disable_and_enable(web: Web, page: Page, phone: str) -> None:
    web.visit(f"/console/users?phone={phone.lstrip('+')}", "console-users-search")
    row = page.locator("#users-table tbody tr")
    expect(row).to_have_count(1)
    row.get_by_role("button", name=f"Disable {phone}").click()
    expect(row.locator(".user-state")).to_have_text("disabled")
    web.shot("console-user-disabled")
    row.get_by_role("button", name=f"Enable {phone}").click()
    expect(row.locator(".user-state")).to_have_text("active")
