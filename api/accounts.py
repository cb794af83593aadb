"""Phone login, plans and membership, direct uploads.

Login: `sms-code` enqueues a one-time code (the worker makes it, stores its keyed hash and sends
it; the API never sees it); `login` trades phone + code for an access and a refresh JWT. Five
wrong codes lock the phone for SMS_LOCK_S. Both endpoints are rate-limited per phone and per IP.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api import docs
from api.auth import CurrentUser
from domain import plans as plan_rules
from domain.errors import InvalidInput, TooManyRequests, Unauthorized
from infra.login import TokenInvalid, Tokens
from infra.resources import Resources
from vendors.tencent_sms import normalize_phone
from workers import messages

User = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]
Code = Annotated[str, msgspec.Meta(pattern=r"^\d{4,8}$")]


class PhoneIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: Annotated[str, msgspec.Meta(min_length=5, max_length=24)]


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: Annotated[str, msgspec.Meta(min_length=5, max_length=24)]
    code: Code


class RefreshIn(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class CodeSent(msgspec.Struct):
    phone: str
    expires_in: int


class TokensOut(msgspec.Struct):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - the scheme's name, not a secret


def client_ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def limit(resources: Resources, key: str, *, per: int, window_s: int, what: str) -> None:
    limits(resources, [(key, per, window_s)], what=what)


def limits(resources: Resources, windows: Sequence[tuple[str, int, int]], *, what: str) -> None:
    """Count one request against each (key, limit, window_s), in one Redis round trip; 429 with the
    longest wait when any is over."""
    refused = [v for v in resources.rate.hit_many(windows) if not v.allowed]
    if refused:
        wait = max(v.retry_after_s for v in refused)
        raise TooManyRequests(f"too many {what}; try again later", retry_after_s=wait)


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post(
        "/sms-code",
        status_code=202,
        sync_to_thread=True,
        responses=docs.errors(
            (429, "`rate_limited`: too many codes or requests, or the phone is locked; see `Retry-After`.")
        ),
    )
    def send_code(self, data: JSONBody[PhoneIn], request: Request[Any, Any, Any], resources: Res) -> CodeSent:
        """Text a login code to the phone (sent by a worker, in the background)."""
        settings = resources.settings
        phone = _phone(data.phone)
        _tokens(resources)
        limit(
            resources,
            f"auth:ip:{client_ip(request)}",
            per=settings.rate_auth_per_minute_ip,
            window_s=60,
            what="requests",
        )
        _refuse_if_locked(resources, phone)
        limit(resources, f"sms:phone:{phone}", per=settings.rate_sms_per_hour_phone, window_s=3600, what="codes")
        messages.login_code(phone)
        return CodeSent(phone, settings.sms_code_ttl_s)

    @post(
        "/login",
        status_code=200,
        sync_to_thread=True,
        responses=docs.errors(
            (401, "`unauthorized`: a wrong, used or expired code, or a disabled user."),
            (429, "`rate_limited`: too many requests, or the phone is locked after wrong codes; see `Retry-After`."),
        ),
    )
    def login(self, data: JSONBody[LoginIn], request: Request[Any, Any, Any], resources: Res) -> TokensOut:
        """Phone + code -> tokens; the user is created on first login. A code works once."""
        settings = resources.settings
        phone = _phone(data.phone)
        tokens = _tokens(resources)
        limit(
            resources,
            f"auth:ip:{client_ip(request)}",
            per=settings.rate_auth_per_minute_ip,
            window_s=60,
            what="requests",
        )
        _refuse_if_locked(resources, phone)
        now = datetime.now(UTC)
        assert resources.login is not None
        if not resources.login.consume(phone, data.code, now=now):
            resources.rate.hit(f"wrong:{phone}", limit=settings.sms_max_wrong_codes, window_s=settings.sms_lock_s)
            raise Unauthorized("wrong, used or expired code", field="code")
        resources.rate.clear(f"wrong:{phone}")
        user = resources.accounts.by_phone(phone, create_at=now)
        if user is None or user.disabled_at is not None:
            raise Unauthorized("this user is disabled")
        return _issue(tokens, user.id, user.role, now)

    @post(
        "/refresh",
        status_code=200,
        sync_to_thread=True,
        responses=docs.errors(
            (401, "`unauthorized`: an invalid or expired refresh token, or an unknown or disabled user.")
        ),
    )
    def refresh(self, data: JSONBody[RefreshIn], resources: Res) -> TokensOut:
        tokens = _tokens(resources)
        try:
            claims = tokens.read(data.refresh_token, "refresh")
        except TokenInvalid:
            raise Unauthorized("invalid or expired refresh token") from None
        user = resources.accounts.get(claims.user_id)
        if user is None or user.disabled_at is not None:
            raise Unauthorized("unknown or disabled user")
        return _issue(tokens, user.id, user.role, datetime.now(UTC))


def _phone(raw: str) -> str:
    phone = normalize_phone(raw)
    if phone is None:
        raise InvalidInput("phone", "not a phone number")
    return phone


def _tokens(resources: Resources) -> Tokens:
    if resources.tokens is None or resources.login is None:
        raise InvalidInput("phone", "phone login is not enabled here (JWT_SECRET is unset)")
    return resources.tokens


def _refuse_if_locked(resources: Resources, phone: str) -> None:
    settings = resources.settings
    if resources.rate.count(f"wrong:{phone}") >= settings.sms_max_wrong_codes:
        raise TooManyRequests(
            "too many wrong codes for this phone; it is locked for a while", retry_after_s=settings.sms_lock_s
        )


def _issue(tokens: Tokens, user_id: str, role: str, now: datetime) -> TokensOut:
    return TokensOut(
        access_token=tokens.issue(user_id, role, "access", now=now),
        refresh_token=tokens.issue(user_id, role, "refresh", now=now),
        expires_in=tokens.ttl("access"),
    )


class PlanOut(msgspec.Struct):
    name: str
    price_fen: int
    credits: int
    concurrency: int
    batch: int
    days: int


class MembershipOut(msgspec.Struct):
    plan: str | None
    member: bool
    member_until: datetime | None
    credits: int
    plan_credits: int


@get("/v1/plans", sync_to_thread=True, tags=["membership"])
def list_plans(resources: Res) -> list[PlanOut]:
    settings = resources.effective()
    days = settings.membership_days
    plans = plan_rules.parse_plans(settings.plans).values()
    return [PlanOut(p.name, p.price_fen, p.credits, p.concurrency, p.batch, days) for p in plans]


@get("/v1/membership", sync_to_thread=True, tags=["membership"], responses=docs.errors(401))
def membership(user: User, resources: Res) -> MembershipOut:
    """Checked on access: a lapsed membership's unused plan credits expire now."""
    now = datetime.now(UTC)
    resources.membership.lapse_if_due(user.id, now=now)
    record = resources.accounts.get(user.id)
    assert record is not None
    member = plan_rules.is_member(record.member_until, now=now)
    return MembershipOut(record.plan, member, record.member_until, record.balance, record.plan_credits)


class UploadIn(msgspec.Struct, forbid_unknown_fields=True):
    content_type: Literal["image/png", "image/jpeg", "image/webp"]


class UploadOut(msgspec.Struct):
    key: str  # name it as `upload_key` in a job's input once the file is up
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


@post("/v1/uploads", status_code=201, sync_to_thread=True, tags=["uploads"], responses=docs.errors(401))
def create_upload(data: JSONBody[UploadIn], user: User, resources: Res) -> UploadOut:
    """A short-lived presigned POST, good for one image under the caller's own prefix."""
    settings = resources.settings
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[data.content_type]
    key = f"uploads/{user.id}/{uuid.uuid4().hex}.{ext}"
    grant = resources.storage.presigned_post(
        key,
        prefix=f"uploads/{user.id}/",
        content_type=data.content_type,
        max_bytes=settings.upload_max_bytes,
        ttl_s=settings.upload_ttl_s,
    )
    return UploadOut(key, grant["url"], grant["fields"], settings.upload_ttl_s, settings.upload_max_bytes)
