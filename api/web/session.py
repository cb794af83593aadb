"""The web session and its guards: who is signed in, admins only, and cross-site request forgery.

- The session is the API's own refresh JWT, in an HttpOnly, SameSite=Lax cookie (Secure over
  https). Signing in happens in the page: it asks `/v1/auth/sms-code` and `/v1/auth/login` as any
  client does, then hands the refresh token to `POST /app/session`, which checks it and sets the
  cookie. Signing out records the token's id in Redis until it expires, so a copied cookie dies too.
- CSRF: every unsafe request under a web router (POST/PUT/PATCH/DELETE) carries a token, in the
  `X-CSRF-Token` header (scripts) or a `csrf_token` form field (forms). The token is an HMAC of a
  random per-browser anchor cookie; another site can neither read the anchor nor the page it is
  written into, so it cannot make one. The anchor is renewed at sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any, Final

import anyio.to_thread
import jwt
import msgspec
from litestar import Request, Response, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.params import JSONBody
from litestar.response import Redirect

from api.auth import CurrentUser
from domain.errors import Forbidden, Unauthorized
from infra.login import TokenInvalid
from infra.resources import Resources

SESSION_COOKIE: Final = "genq_session"
CSRF_COOKIE: Final = "genq_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
USER_STATE: Final = "genq_web_user"  # connection state: the user, looked up once per request
_NEW_ANCHOR: Final = "genq_csrf_new_anchor"  # connection state: an anchor the response must set


class WebAuth:
    """The session and CSRF rules over one process's resources; its methods are guards and a
    dependency for every web router (the workbench's, the console's)."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        secret = resources.settings.jwt_secret.reveal() or secrets.token_hex(32)  # no login: no sessions
        self._csrf_key = hmac.new(secret.encode(), b"genq-web-csrf", hashlib.sha256).digest()

    def __deepcopy__(self, memo: dict[int, Any]) -> WebAuth:
        return self  # Litestar copies routers (and their guards, bound to us): one process, one of us

    # --- who is signed in ----------------------------------------------------------------------

    async def user_of(self, connection: ASGIConnection[Any, Any, Any, Any]) -> CurrentUser | None:
        if USER_STATE not in connection.state:
            token = connection.cookies.get(SESSION_COOKIE)
            connection.state[USER_STATE] = await anyio.to_thread.run_sync(self._lookup, token) if token else None
        user: CurrentUser | None = connection.state[USER_STATE]
        return user

    def _lookup(self, token: str) -> CurrentUser | None:
        tokens = self.resources.tokens
        if tokens is None:
            return None
        try:
            claims = tokens.read(token, "refresh")
        except TokenInvalid:
            return None
        if self.resources.redis.exists(_signed_out_key(token)):
            return None
        user = self.resources.accounts.get(claims.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return CurrentUser(user.id, user.moderation_platform, user.role)

    async def current(self, request: Request[Any, Any, Any]) -> CurrentUser:
        """The `user` dependency of web routes: the signed-in user, or 401 (pages: to sign-in)."""
        user = await self.user_of(request)
        if user is None:
            raise NotAuthorizedException("sign in first")
        return user

    async def signed_in(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        """Guard: a signed-in user (else 401, which a page turns into the sign-in page)."""
        if await self.user_of(connection) is None:
            raise NotAuthorizedException("sign in first")

    async def admin(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        """Guard: a signed-in admin; anyone else signed in gets 403."""
        user = await self.user_of(connection)
        if user is None:
            raise NotAuthorizedException("sign in first")
        if not user.is_admin:
            raise Forbidden("this page is for administrators only")

    # --- cross-site request forgery ------------------------------------------------------------

    def csrf_token(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The token to write into a page's forms and `<meta name="csrf-token">`."""
        anchor = connection.cookies.get(CSRF_COOKIE) or connection.state.get(_NEW_ANCHOR)
        if not anchor:
            anchor = connection.state[_NEW_ANCHOR] = secrets.token_urlsafe(32)
        return self._sign(anchor)

    def _sign(self, anchor: str) -> str:
        return hmac.new(self._csrf_key, anchor.encode(), hashlib.sha256).hexdigest()

    async def csrf(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        """Guard: an unsafe method must carry the token that matches this browser's anchor."""
        if connection.scope.get("method", "GET") in SAFE_METHODS:
            return
        sent = connection.headers.get(CSRF_HEADER.lower())
        if not sent and isinstance(connection, Request) and _is_form(connection):
            form = await connection.form()
            field = form.get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
        anchor = connection.cookies.get(CSRF_COOKIE)
        if not sent or not anchor or not hmac.compare_digest(sent, self._sign(anchor)):
            raise Forbidden(
                "this form has expired or was sent from another site; reload the page and try again",
                reason="csrf",
            )

    def cookies_for(self, connection: ASGIConnection[Any, Any, Any, Any]) -> list[Cookie]:
        """The anchor cookie a response must set when this request made one."""
        anchor = connection.state.get(_NEW_ANCHOR)
        return [self._anchor_cookie(connection, anchor)] if anchor else []

    def _anchor_cookie(self, connection: ASGIConnection[Any, Any, Any, Any], anchor: str) -> Cookie:
        return Cookie(
            key=CSRF_COOKIE, value=anchor, path="/", httponly=True, samesite="lax", secure=self.secure(connection)
        )

    def secure(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        return connection.url.scheme == "https" or self.resources.settings.public_base_url.startswith("https:")

    # --- sign in, sign out ---------------------------------------------------------------------

    def start(self, request: Request[Any, Any, Any], refresh_token: str) -> list[Cookie]:
        """The cookies of a new session (and a new CSRF anchor), once the token is found good."""
        if self._lookup(refresh_token) is None:
            raise Unauthorized("this sign-in has expired or the account is disabled; sign in again")
        assert self.resources.tokens is not None
        secure = self.secure(request)
        ttl = self.resources.tokens.ttl("refresh")
        session = Cookie(
            key=SESSION_COOKIE, value=refresh_token, path="/", max_age=ttl, httponly=True, samesite="lax", secure=secure
        )
        return [session, self._anchor_cookie(request, secrets.token_urlsafe(32))]

    def end(self, request: Request[Any, Any, Any]) -> list[Cookie]:
        """Forget the session: its token is refused from now on, and the cookie is cleared."""
        token = request.cookies.get(SESSION_COOKIE)
        if token and (left := _seconds_left(token)) > 0:
            self.resources.redis.set(_signed_out_key(token), 1, ex=left)
        return [Cookie(key=SESSION_COOKIE, value="", path="/", max_age=0, httponly=True, samesite="lax")]


def _is_form(request: Request[Any, Any, Any]) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type in {"application/x-www-form-urlencoded", "multipart/form-data"}


def _claims(token: str) -> dict[str, Any]:
    """A token's claims, unverified: only for a token already verified, or one being thrown away."""
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        return {}


def _signed_out_key(token: str) -> str:
    ident = _claims(token).get("jti") or hashlib.sha256(token.encode()).hexdigest()
    return f"web:signed-out:{ident}"


def _seconds_left(token: str) -> int:
    expires = _claims(token).get("exp")
    return int(expires - datetime.now(UTC).timestamp()) if isinstance(expires, int | float) else 0


def local_path(target: str | None, default: str = "/app") -> str:
    """A redirect target on this site only: a path, never `//host` or a scheme."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


class SessionIn(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: str


def session_handlers(auth: WebAuth) -> list[HTTPRouteHandler]:
    """`POST /session` (the sign-in page's script ends here; JSON errors) and `POST /logout` (a form)."""

    @post("/session", status_code=204, sync_to_thread=True)
    def open_session(data: JSONBody[SessionIn], request: Request[Any, Any, Any]) -> Response[None]:
        return Response(None, status_code=204, cookies=auth.start(request, data.refresh_token))

    @post("/logout", status_code=303, sync_to_thread=True)
    def logout(request: Request[Any, Any, Any]) -> Redirect:
        return Redirect("/app/login", status_code=303, cookies=auth.end(request))

    return [open_session, logout]
