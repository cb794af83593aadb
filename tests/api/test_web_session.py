"""The web session: sign-in through `POST /app/session`, the cookie's flags, sign-out, the CSRF
guard on every unsafe web request, and the admin guard the console's pages stand behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar, Request, get, post
from litestar.testing import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.web.pages import page_router, render
from api.web.session import WebAuth
from infra.db import jobs
from infra.resources import Resources
from tests.api.web_support import csrf_of, sign_in
from tests.support import GARMENT, make_user

Client = TestClient[Litestar]


def test_pages_send_a_visitor_without_a_session_to_sign_in_and_the_pages_api_answers_401(api: Client) -> None:
    page = api.get("/app/jobs?status=queued", follow_redirects=False)
    data = api.get("/app/v1/jobs")

    assert page.status_code == 303
    assert page.headers["location"] == "/app/login?next=/app/jobs%3Fstatus%3Dqueued"
    assert data.status_code == 401 and data.json()["error"]["code"] == "unauthorized"


def test_signing_in_sets_an_httponly_lax_session_cookie_and_signing_out_ends_it(
    api: Client, resources: Resources
) -> None:
    user = make_user(resources, 0)

    token = sign_in(api, resources, user.user_id)
    session = api.cookies.get("genq_session")
    set_cookie = api.get("/app/login").headers.get("set-cookie")  # an anchor exists now: nothing new is set
    home = api.get("/app")
    out = api.post("/app/logout", data={"csrf_token": token}, follow_redirects=False)
    api.cookies.set("genq_session", session or "")  # a copy of the cookie, kept after signing out
    again = api.get("/app", follow_redirects=False)

    assert home.status_code == 200 and "Membership" in home.text
    assert set_cookie is None
    assert out.status_code == 303 and out.headers["location"] == "/app/login"
    cleared = out.headers["set-cookie"].lower()
    assert "genq_session=" in cleared and "max-age=0" in cleared
    assert again.status_code == 303  # the signed-out token is refused


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_over_https(resources: Resources) -> None:
    user = make_user(resources, 0)
    with TestClient(app=create_app(resources), base_url="https://genq.example") as client:
        token = csrf_of(client.get("/app/login").text)
        assert resources.tokens is not None
        refresh = resources.tokens.issue(user.user_id, "user", "refresh", now=datetime.now(UTC))

        opened = client.post("/app/session", json={"refresh_token": refresh}, headers={"X-CSRF-Token": token})

    cookies = [c.lower() for c in opened.headers.get_list("set-cookie")]
    session = next(c for c in cookies if c.startswith("genq_session="))
    assert {"httponly", "samesite=lax", "secure", "path=/"} <= {part.strip() for part in session.split(";")}


def test_a_cross_site_post_without_the_csrf_token_is_refused_and_changes_nothing(
    api: Client, resources: Resources
) -> None:
    user = make_user(resources, 10)
    token = sign_in(api, resources, user.user_id)
    body = {"kind": "basic_clean", "input": {"image_url": GARMENT}}

    forged = api.post("/app/v1/jobs", json=body)  # what another site's form or script could send
    wrong = api.post("/app/v1/jobs", json=body, headers={"X-CSRF-Token": "0" * 64})
    logout = api.post("/app/logout", data={}, follow_redirects=False)
    stolen_cookie_on_v1 = api.post("/v1/jobs", json=body)  # the JSON API never takes the cookie

    with resources.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    assert forged.status_code == wrong.status_code == 403
    assert forged.json()["error"]["code"] == "forbidden" and forged.json()["error"]["details"]["reason"] == "csrf"
    assert logout.status_code == 403 and "another site" in logout.text  # the error page, in words
    assert stolen_cookie_on_v1.status_code == 401
    assert api.get("/app", follow_redirects=False).status_code == 200  # still signed in
    account = resources.accounts.get(user.user_id)
    assert account is not None and account.balance == 10
    with_token = api.post("/app/v1/jobs", json=body, headers={"X-CSRF-Token": token})
    assert with_token.status_code == 202, with_token.text


def test_a_token_for_another_browser_does_not_pass(api: Client, resources: Resources) -> None:
    """The token is bound to this browser's anchor cookie: one copied from another session fails."""
    user = make_user(resources, 10)
    sign_in(api, resources, user.user_id)
    with TestClient(app=api.app) as other:
        foreign = csrf_of(other.get("/app/login").text)

    refused = api.post("/app/v1/uploads", json={"content_type": "image/png"}, headers={"X-CSRF-Token": foreign})

    assert refused.status_code == 403


@pytest.fixture
def guarded(resources: Resources) -> Iterator[Client]:
    """The API plus a console-like page and action behind `WebAuth.admin`."""
    app = create_app(resources)
    auth = WebAuth(resources)

    @get("/")
    async def page(request: Request[Any, Any, Any]) -> Any:
        return render(auth, request, "error.html", status_code=200, code="ok", friendly=None, message="admin page")

    @post("/act")
    async def act() -> dict[str, bool]:
        return {"done": True}

    app.register(page_router(auth, "/console-test", [page, act], guards=[auth.admin]))
    with TestClient(app=app) as client:
        yield client


def test_the_admin_guard_answers_403_to_users_and_sends_visitors_to_sign_in(
    guarded: Client, resources: Resources
) -> None:
    anonymous = guarded.get("/console-test", follow_redirects=False)
    user = make_user(resources, 0, phone="13800000001")
    token = sign_in(guarded, resources, user.user_id)
    as_user = guarded.get("/console-test")
    user_action = guarded.post("/console-test/act", data={"csrf_token": token})

    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/app/login?next=")
    assert as_user.status_code == 403 and "administrators only" in as_user.text
    assert user_action.status_code == 403


def test_the_admin_guard_lets_an_admin_through(guarded: Client, resources: Resources) -> None:
    admin = resources.accounts.create_user("13800000002", 0, now=datetime.now(UTC), role="admin")
    token = sign_in(guarded, resources, admin.user_id, role="admin")

    page = guarded.get("/console-test")
    action = guarded.post("/console-test/act", data={"csrf_token": token})

    assert page.status_code == 200 and "admin page" in page.text
    assert action.status_code == 201 and action.json() == {"done": True}
