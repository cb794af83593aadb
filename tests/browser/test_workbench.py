"""The workbench (/app) in Debian's Chromium against `genq run`: what seed 003's MVP acceptance list
asks a user to see, each page saved as a screenshot (tests/browser/conftest.py)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Web, make_user, new_phone, sim_config

NO_RELOAD = "window.__stillHere = 'yes'"  # set once; a reload or navigation would lose it


def test_signing_in_by_sms_code_shows_the_membership_panel(web: Web) -> None:
    phone = make_user(web.stack, 7)

    web.sign_in(phone)

    panel = web.page.locator("#membership")
    expect(panel.get_by_role("heading", name="Membership")).to_be_visible()
    expect(web.page.locator("#m-credits")).to_have_text("7")
    expect(web.page.locator("#m-plan")).to_have_text("Free (no plan)")
    expect(web.page.locator("#credits-badge-value")).to_have_text("7")


def test_the_workbench_reads_in_chinese_and_fits_a_phone(web: Web) -> None:
    web.sign_in(make_user(web.stack, 3))
    page = web.page

    page.get_by_role("link", name="简体中文").click()
    expect(page.get_by_role("heading", name="会员")).to_be_visible()
    expect(page.locator("#m-plan")).to_have_text("免费(未购买套餐)")
    expect(page.locator("#job-price")).to_have_text("1 点")
    web.shot("workbench-zh")
    page.set_viewport_size({"width": 390, "height": 844})
    web.visit("/app/batches", "batches-zh-phone")

    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the screen
    expect(page.get_by_label("数据行(CSV:首行为列名,之后每行一条)")).to_be_visible()
    web.visit("/app?lang=en", "workbench-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_buying_a_plan_shows_the_new_credits_and_expiry_in_the_membership_panel(web: Web) -> None:
    web.sign_in(new_phone())  # a new user: signing in creates the account, with nothing
    page = web.page
    expect(page.locator("#m-credits")).to_have_text("0")
    expect(page.locator("#m-until")).to_have_text("\N{EN DASH}")

    page.get_by_role("radio", name=re.compile(r"\bPro — ¥")).check()
    page.get_by_label("WeChat Pay").check()
    page.get_by_role("button", name="Buy").click()
    qr = page.get_by_role("img", name="Payment QR code")
    expect(qr).to_be_visible()
    page.wait_for_function("document.getElementById('payment-qr').naturalWidth > 0")
    web.shot("payment-qr")
    expect(page.locator("#payment-status")).to_have_text("Paid. Your plan is active.", timeout=30_000)

    expect(page.locator("#m-credits")).to_have_text("100")
    expect(page.locator("#m-plan-credits")).to_have_text("100")
    expect(page.locator("#m-plan")).to_have_text("Pro")
    expect(page.locator("#m-until")).to_have_text(re.compile(r"\d{4}"))  # a date, 30 days on
    web.shot("membership-paid")


def _photo(web: Web) -> tuple[str, bytes]:
    url = web.stack.lines["sample photos"].split()[0]  # dress.jpg, made by the project
    return url.rsplit("/", 1)[-1], httpx.get(url).raise_for_status().content


def test_uploading_a_photo_gives_a_basic_clean_result_on_the_page(web: Web) -> None:
    web.sign_in(make_user(web.stack, 5))
    page = web.page
    name, photo = _photo(web)

    page.get_by_label("White-background photo").check()
    page.get_by_label("Product photo").set_input_files({"name": name, "mimeType": "image/jpeg", "buffer": photo})
    expect(page.locator("#job-upload-status")).to_have_text(f"Uploaded: {name}")
    expect(page.get_by_label("Upload progress")).to_have_attribute("value", "100")
    expect(page.locator("#job-price")).to_have_text("1 credit")
    web.shot("uploaded")
    page.get_by_role("button", name="Start").click()

    page.wait_for_url(re.compile(r"/app/jobs/\w+$"))
    expect(page.locator("#job-status")).to_have_text("Succeeded")
    result = page.locator("#job-results figure.result img")
    expect(result).to_have_count(1)
    page.wait_for_function("document.querySelector('#job-results img').naturalWidth > 0")
    web.shot("basic-clean-result")
    expect(page.locator("#credits-badge-value")).to_have_text("4")


def _api_key_user(web: Web, credits: int) -> tuple[str, dict[str, str]]:
    """A user with an API key too (to start a job beside the browser); (phone, auth headers)."""
    phone = new_phone()
    made = json.loads(web.stack.genq("users", "create", "--phone", phone, "--credits", str(credits)))
    return phone, {"Authorization": f"Bearer {made['api_key']}"}


@contextmanager
def _blocking_job(web: Web, headers: dict[str, str], running_s: float) -> Iterator[dict[str, Any]]:
    """A 3D job of this user that runs `running_s` at the (simulated) vendor: on the free plan (one job
    at a time) the user's next job waits (`plan_concurrency`) until it ends. Cancelled on the way out."""
    before = sim_config(web.stack, "sim-hunyuan3d", running_s=running_s)
    body = {"kind": "model_3d", "input": {"version": "3.1", "prompt": "a wooden chair"}}
    job = httpx.post(f"{web.stack.api}/v1/jobs", json=body, headers=headers).raise_for_status().json()
    try:
        yield job
    finally:
        httpx.post(f"{web.stack.api}/v1/jobs/{job['id']}/cancel", headers=headers)
        sim_config(web.stack, "sim-hunyuan3d", **before)


def test_a_model_pose12_job_goes_from_queued_to_succeeded_without_a_reload_with_12_downloadable_images(
    web: Web,
) -> None:
    phone, headers = _api_key_user(web, 10)
    web.sign_in(phone)
    page = web.page

    with _blocking_job(web, headers, running_s=6):
        page.get_by_label("12 model photos").check()
        page.get_by_label("…or the address (URL) of a photo on the web").fill(web.stack.lines["sample image"])
        page.get_by_label("Scene").select_option("studio")
        page.get_by_label("Category").select_option("coat")
        web.shot("pose12-form")
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r"/app/jobs/\w+$"))
        page.evaluate(NO_RELOAD)

        expect(page.locator("#job-status")).to_have_text("Queued")
        expect(page.locator("#job-queue")).to_contain_text("Position 1 in line.")
        web.shot("pose12-queued")
        expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=60_000)

    assert page.evaluate("window.__stillHere") == "yes"
    images = page.locator("#job-results figure.result")
    expect(images).to_have_count(12)
    page.wait_for_function("[...document.querySelectorAll('#job-results img')].every(i => i.naturalWidth > 0)")
    expect(page.locator("#job-timings [data-timing=queue]")).not_to_have_text("\N{EN DASH}")
    web.shot("pose12-results")
    _each_download_works(page, images)


def _each_download_works(page: Page, figures: Any) -> None:
    links = figures.get_by_role("link", name=re.compile(r"^Download "))
    expect(links).to_have_count(12)
    for href in links.evaluate_all("links => links.map(a => a.href)"):
        answer = page.request.get(href)
        assert answer.status == 200 and answer.headers["content-type"] == "image/png", href
    everything = page.get_by_role("link", name="Download all (zip)")
    zipped = page.request.get(everything.evaluate("a => a.href"))
    assert zipped.status == 200
    names = zipfile.ZipFile(io.BytesIO(zipped.body())).namelist()
    assert len([n for n in names if n.endswith(".png")]) == 12 and "manifest.csv" in names


def test_cancelling_a_waiting_job_gives_its_credits_back(web: Web) -> None:
    phone, headers = _api_key_user(web, 10)
    web.sign_in(phone)
    page = web.page

    with _blocking_job(web, headers, running_s=120):
        page.get_by_label("…or the address (URL) of a photo on the web").fill(web.stack.lines["sample image"])
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r"/app/jobs/\w+$"))
        expect(page.locator("#job-status")).to_have_text("Queued")
        expect(page.locator("#job-queue")).to_have_attribute("data-reason", "plan_concurrency")
        expect(page.locator("#credits-badge-value")).to_have_text("4")  # 10 - 5 (the 3D job) - 1
        web.shot("waiting")

        page.get_by_role("button", name="Cancel").click()

        expect(page.locator("#job-status")).to_have_text("Cancelled")
        expect(page.locator("#credits-badge-value")).to_have_text("5", timeout=20_000)
        web.shot("cancelled-refunded")
        page.get_by_role("button", name="Retry").click()  # a new job, the same input, charged again
        expect(page.locator("#job-status")).to_have_text("Queued")
        expect(page.locator("#credits-badge-value")).to_have_text("4")
        web.shot("retried")


def test_a_batch_made_in_the_browser_shows_its_progress_live_and_offers_the_zip(web: Web) -> None:
    web.sign_in(make_user(web.stack, 10))
    page = web.page
    photos = web.stack.lines["sample photos"].split()
    before = sim_config(web.stack, "sim-runninghub", running_s=2.5)
    try:
        web.visit("/app/batches", "batches")
        page.get_by_label("Name").fill("spring coats")
        page.get_by_label("12 model photos").check()
        page.get_by_label("Scene").select_option("street")
        page.get_by_label("Rows (CSV", exact=False).fill(
            "image_url,category\n"
            + "\n".join(f"{url},{cat}" for url, cat in zip(photos, ["dress", "hoodie", "coat"], strict=True))
        )
        expect(page.locator("#batch-row-count")).to_have_text("3")
        expect(page.locator("#batch-price")).to_have_text("3 credits")
        web.shot("batch-form")
        page.get_by_role("button", name="Start batch").click()
        page.wait_for_url(re.compile(r"/app/batches/\w+$"))
        page.evaluate(NO_RELOAD)

        progress = page.locator("#batch-progress-text")
        expect(progress).to_contain_text("1 / 3", timeout=60_000)
        web.shot("batch-one-done")
        page.get_by_role("button", name="Pause").click()
        expect(page.locator("#batch-status")).to_have_text("Paused")
        web.shot("batch-paused")
        page.get_by_role("button", name="Resume").click()
        expect(page.locator("#batch-status")).not_to_have_text("Paused")
        expect(progress).to_contain_text("3 / 3", timeout=60_000)
    finally:
        sim_config(web.stack, "sim-runninghub", **before)

    assert page.evaluate("window.__stillHere") == "yes"
    expect(page.locator("#batch-status")).to_have_text("Completed")
    zip_link = page.get_by_role("link", name="Download zip")
    expect(zip_link).to_be_visible()
    web.shot("batch-done")
    zipped = page.request.get(zip_link.evaluate("a => a.href"))
    assert zipped.status == 200
    names = zipfile.ZipFile(io.BytesIO(zipped.body())).namelist()
    assert len([n for n in names if n.endswith(".png")]) == 36 and "manifest.csv" in names


def test_a_video_plays_and_a_3d_model_shows_its_preview_and_files(web: Web) -> None:
    web.sign_in(make_user(web.stack, 20))
    page = web.page

    page.get_by_role("radio", name=re.compile(r"^Video ")).check()
    page.get_by_label("Video model").select_option("sora-2")
    page.get_by_label("Length").select_option("10")
    page.get_by_role("textbox", name="Prompt").fill("a red coat in the wind")
    expect(page.locator("#job-price")).to_have_text("15 credits")
    page.get_by_label("Resolution").select_option("1080p")
    expect(page.locator("#job-price")).to_have_text("not offered")  # sora-2 is 720p only
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    page.get_by_label("Resolution").select_option("720p")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/app/jobs/\w+$"))
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=60_000)
    page.wait_for_function("document.querySelector('#job-results video').readyState >= 1")  # it can play
    assert page.evaluate("document.querySelector('#job-results video').duration") > 0
    web.shot("video-result")

    web.visit("/app", "workbench-again")
    page.get_by_role("radio", name=re.compile(r"^3D model ")).check()
    page.get_by_role("textbox", name="Prompt").fill("a wooden chair")
    expect(page.locator("#job-price")).to_have_text("5 credits")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/app/jobs/\w+$"))
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator("#job-results figure.result img")).to_have_count(1)  # the vendor's preview
    expect(page.get_by_text("3D model (GLB)")).to_be_visible()
    web.shot("3d-result")

    web.visit("/app/jobs", "job-list")
    expect(page.locator("#job-list tbody tr")).to_have_count(2)
    expect(page.locator("#job-list tbody tr[data-status=succeeded]")).to_have_count(2)
