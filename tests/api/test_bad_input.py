"""Bad input gets a clear 4xx in the one error shape, never a 500, and charges nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from infra.resources import Resources
from tests.support import auth, make_user, pose12_body

Client = TestClient[Litestar]


def error_of(resp: Any) -> dict[str, Any]:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    return dict(resp.json()["error"])


def test_a_body_nested_a_thousand_deep_is_a_4xx(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1)
    nested = "[" * 1000 + "]" * 1000

    resp = api.post(
        "/v1/jobs",
        content=f'{{"kind": "video", "input": {{"prompt": {nested}}}}}',
        headers={**auth(user), "Content-Type": "application/json"},
    )

    assert error_of(resp)["code"] in ("invalid_input", "bad_request")
    assert resources.accounts.balance(user.user_id) == 1


def test_a_body_that_is_not_utf8_is_400(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1)

    resp = api.post(
        "/v1/jobs", content=b'{"kind": "\xff\xfe"}', headers={**auth(user), "Content-Type": "application/json"}
    )

    assert resp.status_code == 400 and error_of(resp)["code"] == "bad_request"


@pytest.mark.parametrize(
    "url",
    ["http://exa\x00mple.com/a.png", "http://example.com/a\r\nb.png", "http://0177.0.0.1/a.png", "http://[::1/a.png"],
    ids=["nul", "crlf", "octal-ipv4", "broken-ipv6"],
)
def test_an_unusable_image_url_is_422_naming_the_field(api: Client, resources: Resources, url: str) -> None:
    user = make_user(resources, credits=1)

    resp = api.post("/v1/jobs", json=pose12_body(image_url=url), headers=auth(user))

    assert resp.status_code == 422
    assert error_of(resp)["details"]["field"] == "input.image_url"
    assert resources.accounts.balance(user.user_id) == 1


@pytest.mark.parametrize("job_id", ["%00", "a" * 300, "x%0Ay"], ids=["nul", "too-long", "newline"])
def test_a_malformed_job_id_is_404(api: Client, resources: Resources, job_id: str) -> None:
    user = make_user(resources, credits=1)

    resp = api.get(f"/v1/jobs/{job_id}", headers=auth(user))

    assert resp.status_code == 404 and error_of(resp)["code"] == "not_found"


@pytest.mark.parametrize("cursor", ["2026-01-01T00:00:00|abc", "garbage", "%00"], ids=["naive-time", "garbage", "nul"])
def test_a_malformed_cursor_is_422(api: Client, resources: Resources, cursor: str) -> None:
    import base64

    user = make_user(resources, credits=1)
    encoded = base64.urlsafe_b64encode(cursor.encode()).decode()

    for raw in (cursor, encoded):
        resp = api.get("/v1/jobs", params={"cursor": raw}, headers=auth(user))
        assert resp.status_code == 422 and error_of(resp)["details"]["field"] == "cursor"


def test_an_empty_idempotency_key_is_422_and_poisons_nothing(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=2)

    empty = api.post("/v1/jobs", json=pose12_body(), headers={**auth(user), "Idempotency-Key": ""})
    later = api.post("/v1/jobs", json=pose12_body(), headers={**auth(user), "Idempotency-Key": ""})
    plain = api.post("/v1/jobs", json=pose12_body(), headers=auth(user))

    assert error_of(empty)["details"]["field"] == "Idempotency-Key"
    assert later.status_code == 422
    assert plain.status_code == 202
    assert resources.accounts.balance(user.user_id) == 1


def test_an_order_id_no_order_could_have_is_404(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=1)

    resp = api.get("/v1/orders/%00", headers=auth(user))

    assert resp.status_code == 404 and error_of(resp)["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    ["/v1/admin/jobs?user_id=%00", "/v1/admin/users?phone=%00", "/v1/admin/config/changes?key=%00"],
    ids=["admin-user-id", "admin-phone", "config-key"],
)
def test_a_nul_in_a_search_is_never_a_500(api: Client, resources: Resources, path: str) -> None:
    """SQLite finds nothing; PostgreSQL cannot hold a NUL in text, which is the client's input: 400."""
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")

    resp = api.get(path, headers=auth(admin))

    assert resp.status_code in (200, 400), resp.text
    assert resp.status_code == 200 or error_of(resp)["code"] == "bad_request"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_job_body_that_is_not_json_is_415(api: Client, resources: Resources, content_type: str | None) -> None:
    user = make_user(resources, credits=1)
    headers = {**auth(user), **({"Content-Type": content_type} if content_type else {})}

    resp = api.post("/v1/jobs", content=b'{"kind": "basic_clean", "input": {}}', headers=headers)

    assert resp.status_code == 415 and error_of(resp)["code"] == "unsupported_media_type"
    assert resources.accounts.balance(user.user_id) == 1


@pytest.mark.parametrize(
    "instant",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00"],
    ids=["before-year-1-in-utc", "past-9999-in-utc", "no-offset"],
)
@pytest.mark.parametrize("bound", ["created_from", "created_to"])
def test_a_bulk_filter_time_utc_cannot_hold_is_422(api: Client, resources: Resources, instant: str, bound: str) -> None:
    """Found by tests/api/test_fuzz.py (seed 12, 150 examples): the bound reached the database, a 500."""
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    body = {"filter": {bound: instant}, "dry_run": False}

    answers = [api.post(f"/v1/admin/jobs/{action}", json=body, headers=auth(admin)) for action in ("cancel", "retry")]

    for resp in answers:
        assert resp.status_code == 422 and error_of(resp)["code"] == "invalid_input"
        assert bound in f"{error_of(resp)['details']['field']} {error_of(resp)['message']}"
