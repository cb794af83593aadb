"""Signing in to the web pages in-process (the Litestar test client), as the sign-in page does."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from litestar import Litestar
from litestar.testing import TestClient

from infra.resources import Resources

CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


def csrf_of(html: str) -> str:
    found = CSRF_META.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient[Litestar], resources: Resources, user_id: str, role: str = "user") -> str:
    """A web session for `user_id` (the refresh token the login API would give, handed to
    `POST /app/session`); returns the CSRF token of the pages it now sees."""
    token = csrf_of(client.get("/app/login").text)
    assert resources.tokens is not None
    refresh = resources.tokens.issue(user_id, role, "refresh", now=datetime.now(UTC))
    opened = client.post("/app/session", json={"refresh_token": refresh}, headers={"X-CSRF-Token": token})
    assert opened.status_code == 204, opened.text
    return csrf_of(client.get("/app").text)
