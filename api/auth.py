"""Who is calling: `Authorization: Bearer <api key>`; keys are looked up by their digest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from litestar import Request
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException

from infra.resources import Resources


@dataclass(frozen=True)
class CurrentUser:
    id: str
    moderation_platform: str | None = None  # the key's or the user's choice, if any


def current_user(request: Request[Any, Any, Any], resources: NamedDependency[Resources]) -> CurrentUser:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("send `Authorization: Bearer <api key>`")
    owner = resources.accounts.key_owner(token.strip())
    if owner is None:
        raise NotAuthorizedException("unknown or revoked API key")
    structlog.contextvars.bind_contextvars(user_id=owner.user_id)
    return CurrentUser(owner.user_id, owner.moderation_platform)
