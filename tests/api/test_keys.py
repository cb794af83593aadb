"""API keys made, listed and revoked by their owner; users disabled by an admin; both from the CLI.

Each API process keeps a looked-up key for `key_cache_ttl_s`: `other_api` is a second process over
the same database, with its own cache on a clock the test moves (no sleeps).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from api.app import create_app
from genq.cli import main
from infra.keycache import KeyCache
from infra.resources import Resources
from tests.support import auth, make_user

Client = TestClient[Litestar]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def other_api(resources: Resources, clock: Clock) -> Iterator[Client]:
    """Another API process: the same database and services, its own key cache on `clock`."""
    cache = KeyCache(resources.accounts.key_owner, ttl_s=resources.settings.key_cache_ttl_s, clock=clock)
    with TestClient(app=create_app(dataclasses.replace(resources, key_cache=cache))) as client:
        yield client


def ttl(resources: Resources) -> float:
    return resources.settings.key_cache_ttl_s


def test_a_new_key_works_is_listed_by_its_last_four_and_is_refused_once_revoked(
    api: Client, resources: Resources
) -> None:
    user = make_user(resources, credits=0)

    made = api.post("/v1/keys", headers=auth(user)).json()
    listed = api.get("/v1/keys", headers=bearer(made["api_key"])).json()
    revoked = api.delete(f"/v1/keys/{made['id']}", headers=auth(user))
    after = api.get("/v1/jobs", headers=bearer(made["api_key"]))
    again = api.delete(f"/v1/keys/{made['id']}", headers=auth(user))

    assert made["api_key"].endswith(made["last4"])
    assert [k["last4"] for k in listed] == [user.api_key[-4:], made["last4"]]
    assert all("api_key" not in k for k in listed)
    assert revoked.status_code == 204 and after.status_code == 401 and again.status_code == 404
    assert api.get("/v1/jobs", headers=auth(user)).status_code == 200  # the first key is untouched


def test_another_users_key_cannot_be_revoked(api: Client, resources: Resources) -> None:
    owner = make_user(resources, credits=0, phone="13800000001")
    stranger = make_user(resources, credits=0, phone="13800000002")
    [key] = api.get("/v1/keys", headers=auth(owner)).json()

    resp = api.delete(f"/v1/keys/{key['id']}", headers=auth(stranger))

    assert resp.status_code == 404
    assert api.get("/v1/jobs", headers=auth(owner)).status_code == 200


def test_a_disabled_user_is_refused_by_key_and_token_until_enabled(api: Client, resources: Resources) -> None:
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    user = make_user(resources, credits=0)
    assert resources.tokens is not None
    token = resources.tokens.issue(user.user_id, "user", "access", now=datetime.now(UTC))
    refresh = resources.tokens.issue(user.user_id, "user", "refresh", now=datetime.now(UTC))

    disabled = api.post(f"/v1/admin/users/{user.user_id}/disable", headers=auth(admin))
    by_key, by_token = api.get("/v1/jobs", headers=auth(user)), api.get("/v1/jobs", headers=bearer(token))
    refreshed = api.post("/v1/auth/refresh", json={"refresh_token": refresh})
    api.post(f"/v1/admin/users/{user.user_id}/enable", headers=auth(admin))

    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    assert (by_key.status_code, by_token.status_code, refreshed.status_code) == (401, 401, 401)
    assert api.get("/v1/jobs", headers=auth(user)).status_code == 200


def test_the_command_line_revokes_a_key_and_disables_a_user_within_the_key_cache_time(
    other_api: Client,
    clock: Clock,
    resources: Resources,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VAR_DIR", str(resources.settings.var_dir))
    monkeypatch.setenv("DATABASE_URL", resources.settings.database_url)
    user = make_user(resources, credits=0, phone="13800000001")
    other = make_user(resources, credits=0, phone="13800000002")
    [key] = other_api.get("/v1/keys", headers=auth(user)).json()
    other_api.get("/v1/jobs", headers=auth(other))

    revoked = main(["keys", "revoke", key["id"]])
    disabled = main(["users", "disable", "13800000002"])
    missing = main(["keys", "revoke", key["id"]])
    clock.now = ttl(resources) - 0.01
    before = [other_api.get("/v1/jobs", headers=auth(u)).status_code for u in (user, other)]
    clock.now = ttl(resources)
    after = [other_api.get("/v1/jobs", headers=auth(u)).status_code for u in (user, other)]

    assert (revoked, disabled, missing) == (0, 0, 1)
    assert json.loads(capsys.readouterr().out.splitlines()[1]) == {"user_id": other.user_id, "disabled": True}
    assert (before, after) == ([200, 200], [401, 401])


def test_a_key_revoked_through_one_process_is_refused_there_at_once_and_by_the_others_within_the_ttl(
    api: Client, other_api: Client, clock: Clock, resources: Resources
) -> None:
    user = make_user(resources, credits=0)
    made = api.post("/v1/keys", headers=auth(user)).json()
    assert api.get("/v1/jobs", headers=bearer(made["api_key"])).status_code == 200  # kept by both
    assert other_api.get("/v1/jobs", headers=bearer(made["api_key"])).status_code == 200

    revoked = api.delete(f"/v1/keys/{made['id']}", headers=auth(user))
    here = api.get("/v1/jobs", headers=bearer(made["api_key"]))
    clock.now = ttl(resources) - 0.01
    there_before = other_api.get("/v1/jobs", headers=bearer(made["api_key"]))
    clock.now = ttl(resources)
    there_after = other_api.get("/v1/jobs", headers=bearer(made["api_key"]))

    assert revoked.status_code == 204 and here.status_code == 401
    assert (there_before.status_code, there_after.status_code) == (200, 401)
    assert api.get("/v1/jobs", headers=auth(user)).status_code == 200  # the user's other key still works


def test_a_user_disabled_through_one_process_is_refused_there_at_once_and_by_the_others_within_the_ttl(
    api: Client, other_api: Client, clock: Clock, resources: Resources
) -> None:
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    user = make_user(resources, credits=0)
    assert resources.tokens is not None
    token = resources.tokens.issue(user.user_id, "user", "access", now=datetime.now(UTC))
    assert api.get("/v1/jobs", headers=auth(user)).status_code == 200  # kept by both
    assert other_api.get("/v1/jobs", headers=auth(user)).status_code == 200

    disabled = api.post(f"/v1/admin/users/{user.user_id}/disable", headers=auth(admin))
    here = api.get("/v1/jobs", headers=auth(user))
    by_token = other_api.get("/v1/jobs", headers=bearer(token))  # tokens are never kept
    clock.now = ttl(resources) - 0.01
    there_before = other_api.get("/v1/jobs", headers=auth(user))
    clock.now = ttl(resources)
    there_after = other_api.get("/v1/jobs", headers=auth(user))

    assert disabled.status_code == 200 and here.status_code == 401 and by_token.status_code == 401
    assert (there_before.status_code, there_after.status_code) == (200, 401)


def test_a_user_enabled_again_is_let_in_at_once_by_a_process_that_refused_them(
    api: Client, other_api: Client, resources: Resources
) -> None:
    """Refusals are never kept, so nothing stale stands in front of a key that is good again."""
    admin = resources.accounts.create_user("100", 0, now=datetime.now(UTC), role="admin")
    user = make_user(resources, credits=0)
    api.post(f"/v1/admin/users/{user.user_id}/disable", headers=auth(admin))
    refused = other_api.get("/v1/jobs", headers=auth(user))

    api.post(f"/v1/admin/users/{user.user_id}/enable", headers=auth(admin))
    let_in = other_api.get("/v1/jobs", headers=auth(user))

    assert (refused.status_code, let_in.status_code) == (401, 200)
