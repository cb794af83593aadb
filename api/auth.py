"""Who is calling: `Authorization: Bearer <api key>`; keys are looked up by their digest.

A key's lookup is kept by this process for `key_cache_ttl_s` (infra/keycache.py); an access token's
user is read on every request, so a disabled user's token is refused at once by every process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from litestar import Request
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException

from domain.errors import Forbidden
from infra.accounts import KEY_PREFIX
from infra.login import TokenInvalid
from infra.resources import Resources


@dataclass(frozen=True)
class CurrentUser:
    id: str
    moderation_platform: str | None = None  # the key's or the user's choice, if any
    role: str = "user"
    webhook_url: str | None = None  # the API key's default webhook for the jobs it submits
    webhook_events: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_user(request: Request[Any, Any, Any], resources: NamedDependency[Resources]) -> CurrentUser:
    """`Authorization: Bearer <api key>` (server to server) or `Bearer <access JWT>` (phone login)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("send `Authorization: Bearer <api key or access token>`")
    user = _by_api_key(resources, token) if token.startswith(KEY_PREFIX) else _by_jwt(resources, token)
    structlog.contextvars.bind_contextvars(user_id=user.id)
    return user


def _by_api_key(resources: Resources, token: str) -> CurrentUser:
    owner = resources.key_cache.owner(token)
    if owner is None:
        raise NotAuthorizedException("unknown or revoked API key, or a disabled user")
    return CurrentUser(owner.user_id, owner.moderation_platform, owner.role, owner.webhook_url, owner.webhook_events)


def _by_jwt(resources: Resources, token: str) -> CurrentUser:
    if resources.tokens is None:
        raise NotAuthorizedException("unknown API key")
    try:
        claims = resources.tokens.read(token, "access")
    except TokenInvalid:
        raise NotAuthorizedException("invalid or expired access token") from None
    user = resources.accounts.get(claims.user_id)
    if user is None or user.disabled_at is not None:
        raise NotAuthorizedException("unknown or disabled user")
    return CurrentUser(user.id, user.moderation_platform, user.role)


def admin_user(user: NamedDependency[CurrentUser]) -> CurrentUser:
    if not user.is_admin:
        raise Forbidden("this needs the admin role")
    return user
