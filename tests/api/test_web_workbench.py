"""The workbench's routes in-process: a user sees only their own jobs, files, batches and orders;
the pages' API is the JSON API; the job zip and the payment QR; the zh-CN translation is whole."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import update

from api.web import i18n
from api.web.strings_zh import ZH_CN
from domain import plans as plan_rules
from infra.db import jobs
from infra.resources import Resources
from tests.api.web_support import sign_in
from tests.support import GARMENT, make_user

Client = TestClient[Litestar]
WEB = Path(__file__).resolve().parents[2] / "api" / "web"
WORKBENCH_FILES = [
    *sorted((WEB / "templates").glob("*.html")),
    *sorted((WEB / "templates" / "workbench").glob("*.html")),
    WEB / "static" / "web.js",
    WEB / "static" / "workbench.js",
]


def _job(client: Client, token: str) -> str:
    body = {"kind": "basic_clean", "input": {"image_url": GARMENT}}
    answer = client.post("/app/v1/jobs", json=body, headers={"X-CSRF-Token": token})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _succeed(resources: Resources, job_id: str, user_id: str) -> bytes:
    """The job as the archiver leaves it: one PNG in our storage, named in its results."""
    content = b"\x89PNG\r\n\x1a\n" + b"result" * 100
    key = f"results/{user_id}/{job_id}/0.png"
    resources.storage.upload(key, io.BytesIO(content), content_type="image/png")
    with resources.engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                status="succeeded",
                finished_at=datetime.now(UTC),
                results=[{"key": key, "content_type": "image/png", "size": len(content)}],
            )
        )
    return content


@pytest.fixture
def owner_and_other(api: Client, resources: Resources) -> tuple[str, str, str]:
    """(owner's user id, owner's job id, the other user's id); the client is left signed in as the other."""
    owner = make_user(resources, 10, phone="13800000010")
    other = make_user(resources, 10, phone="13800000011")
    job_id = _job(api, sign_in(api, resources, owner.user_id))
    sign_in(api, resources, other.user_id)
    return owner.user_id, job_id, other.user_id


def test_another_users_job_its_files_and_its_events_are_not_found(
    api: Client, resources: Resources, owner_and_other: tuple[str, str, str]
) -> None:
    owner_id, job_id, _ = owner_and_other
    _succeed(resources, job_id, owner_id)

    page = api.get(f"/app/jobs/{job_id}")
    files = api.get(f"/app/jobs/{job_id}/files.zip")
    data = api.get(f"/app/v1/jobs/{job_id}")
    events = api.get(f"/app/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
    listed = api.get("/app/v1/jobs").json()["items"]

    assert page.status_code == 404 and "belongs to someone else" in page.text  # the error page, in words
    assert files.status_code == data.status_code == events.status_code == 404
    assert data.json()["error"]["code"] == "not_found"
    assert listed == []


def test_another_users_batch_and_order_are_not_found(api: Client, resources: Resources) -> None:
    owner = make_user(resources, 10, phone="13800000012")
    other = make_user(resources, 10, phone="13800000013")
    token = sign_in(api, resources, owner.user_id)
    body = {"defaults": {"kind": "basic_clean", "input": {}}, "rows": [{"input": {"image_url": GARMENT}}]}
    batch = api.post("/app/v1/batches", json=body, headers={"X-CSRF-Token": token}).json()
    order = _order(resources, owner.user_id)
    mine = (api.get(f"/app/batches/{batch['id']}"), api.get(f"/app/orders/{order}/qr.svg"))
    sign_in(api, resources, other.user_id)

    theirs = (api.get(f"/app/batches/{batch['id']}"), api.get(f"/app/orders/{order}/qr.svg"))
    zipped = api.get(f"/app/v1/batches/{batch['id']}/archive")

    assert [r.status_code for r in mine] == [200, 200]
    assert [r.status_code for r in theirs] == [404, 404]
    assert zipped.status_code == 404


def _order(resources: Resources, user_id: str) -> str:
    plan = plan_rules.purchasable(plan_rules.parse_plans(resources.effective().plans), "pro")
    order = resources.membership.create_order(user_id, plan, "wechat", now=datetime.now(UTC))
    resources.membership.set_payment(order.id, {"code_url": "weixin://wxpay/bizpayurl?pr=genqtest"})
    return order.id


def test_the_payment_code_is_drawn_as_a_qr_svg(api: Client, resources: Resources) -> None:
    user = make_user(resources, 0)
    sign_in(api, resources, user.user_id)
    order = _order(resources, user.user_id)

    qr = api.get(f"/app/orders/{order}/qr.svg")

    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in qr.content and b"<path" in qr.content


def test_download_all_zips_the_owners_files(
    api: Client, resources: Resources, owner_and_other: tuple[str, str, str]
) -> None:
    owner_id, job_id, _ = owner_and_other
    content = _succeed(resources, job_id, owner_id)
    sign_in(api, resources, owner_id)

    answer = api.get(f"/app/jobs/{job_id}/files.zip")

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert archive.read("0000-basic_clean-0.png") == content
    assert "manifest.csv" in archive.namelist()


def test_the_pages_api_is_the_json_api_under_the_session(
    api: Client, resources: Resources, owner_and_other: tuple[str, str, str]
) -> None:
    owner_id, job_id, _ = owner_and_other
    sign_in(api, resources, owner_id)

    page = api.get(f"/app/jobs/{job_id}")
    job = api.get(f"/app/v1/jobs/{job_id}").json()
    pricing = api.get("/app/v1/pricing").json()
    schema = api.get("/schema/openapi.json").json()

    assert page.status_code == 200 and f'data-job-id="{job_id}"' in page.text
    assert job["id"] == job_id and job["kind"] == "basic_clean" and job["price"] == 1
    assert {"kind": "basic_clean", "variant": {}, "price": 1, "deadline_s": 120} in pricing
    assert not [path for path in schema["paths"] if path.startswith(("/app", "/console"))]


def test_an_unknown_workbench_page_is_a_404_page(api: Client, resources: Resources) -> None:
    sign_in(api, resources, make_user(resources, 0).user_id)

    answer = api.get("/app/nowhere/at/all")

    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")


def test_the_language_switch_shows_the_workbench_in_chinese_and_keeps_it(api: Client, resources: Resources) -> None:
    sign_in(api, resources, make_user(resources, 0).user_id)

    switched = api.get("/app?lang=zh-CN")
    next_page = api.get("/app/jobs")
    back = api.get("/app/jobs?lang=en")

    assert '<html lang="zh-CN">' in switched.text and "会员" in switched.text and "购买套餐" in switched.text
    assert '<html lang="zh-CN">' in next_page.text and "任务" in next_page.text
    assert '<html lang="en">' in back.text and "任务" not in back.text and "Jobs" in back.text


def test_every_workbench_string_has_a_zh_cn_translation() -> None:
    """Each `_("…")` of the templates and `t("…")` of the scripts, and every keyed word."""
    used: set[str] = set()
    for path in WORKBENCH_FILES:
        text = path.read_text()
        used |= set(re.findall(r'\b_\(\s*"((?:[^"\\]|\\.)+)"\s*\)', text))
        used |= set(re.findall(r"\b_\(\s*'((?:[^'\\]|\\.)+)'\s*\)", text))
        used |= set(re.findall(r'\bt\(\s*"((?:[^"\\]|\\.)+)"', text))
    choices = re.findall(r'\("\w+", "([^"]+)", "([^"]+)"\)', (WEB / "templates/workbench/_fields.html").read_text())
    used |= {text for choice in choices for text in choice}
    used |= set(i18n.KEYED)

    missing = sorted(text for text in used if text not in ZH_CN)

    assert len(used) > 150
    assert missing == []
