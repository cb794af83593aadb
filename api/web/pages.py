"""What every web page shares: rendering (language, CSRF token, user), the error page, and the two
kinds of web router — pages (HTML, errors as a page) and the pages' JSON routes (the API's error
shape), both behind the CSRF guard and the session's `user`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import structlog
from litestar import Request, Response, Router
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template import TemplateConfig
from litestar.types import ControllerRouterHandler, Guard

from api.errors import STATUS_BY_CODE
from api.web import i18n
from api.web.session import USER_STATE, WebAuth
from domain.errors import DomainError

log = structlog.get_logger()

TEMPLATES: Final = Path(__file__).parent / "templates"
STATIC: Final = Path(__file__).parent / "static"
STATIC_PATH: Final = "/static/web"
LANG_COOKIE: Final = "genq_lang"

# What a person is told, by error code; the API's own message is shown beside it when it helps.
FRIENDLY: Final = {
    "not_found": "We could not find this page, or it belongs to someone else.",
    "forbidden": "You are not allowed to do this.",
    "unauthorized": "Please sign in again.",
    "rate_limited": "Too many tries in a short time. Wait a moment and try again.",
    "conflict": "This cannot be done in the item's current state. Reload the page to see it now.",
    "internal_error": "Something went wrong on our side. Please try again in a moment.",
}


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine)


def language(request: Request[Any, Any, Any]) -> str:
    return i18n.pick(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def render(
    auth: WebAuth, request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any
) -> Template:
    """`template` with what every page needs: `_` (translate), `lang`, `csrf_token`, `user`,
    `catalog_json` (the translations for scripts). `?lang=` switches the language and keeps it."""
    lang = language(request)
    token = auth.csrf_token(request)  # first: it may make the anchor that `cookies_for` sets
    cookies: list[Cookie] = auth.cookies_for(request)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        cookies.append(Cookie(key=LANG_COOKIE, value=lang, path="/", max_age=365 * 86400, samesite="lax"))
    page = {
        "_": partial(i18n.translate, lang),
        "lang": lang,
        "languages": i18n.LANGUAGES,
        "csrf_token": token,
        "user": request.state.get(USER_STATE),
        "path": request.url.path,
        "static": STATIC_PATH,
        "catalog_json": json.dumps(i18n.catalog(lang), ensure_ascii=False).replace("</", "<\\/"),
    }
    return Template(template_name=template, context=page | context, status_code=status, cookies=cookies)


def error_page(auth: WebAuth, request: Request[Any, Any, Any], status: int, code: str, message: str) -> Template:
    """The web routes' one error shape, as a page: a status, a stable `code` and words for people."""
    friendly = FRIENDLY.get(code)
    return render(
        auth, request, "error.html", status=status, status_code=status, code=code, friendly=friendly, message=message
    )


def page_exception_handlers(auth: WebAuth) -> dict[type[Exception] | int, Any]:
    def on_unauthorized(request: Request[Any, Any, Any], _: NotAuthorizedException) -> Redirect:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/app/login?next={quote(target)}", status_code=303)

    def on_domain(request: Request[Any, Any, Any], exc: DomainError) -> Template:
        return error_page(auth, request, STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message)

    def on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Template:
        code = {404: "not_found", 403: "forbidden", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return error_page(auth, request, exc.status_code, code, str(exc.detail))

    def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Template | Response[Any]:
        log.exception("unhandled_web_error", error=repr(exc))
        return error_page(auth, request, 500, "internal_error", "")

    return {
        NotAuthorizedException: on_unauthorized,
        DomainError: on_domain,
        HTTPException: on_http,
        Exception: on_unexpected,
    }


def page_router(
    auth: WebAuth, path: str, handlers: Sequence[ControllerRouterHandler], *, guards: Sequence[Guard] = ()
) -> Router:
    """HTML pages and form actions at `path`: CSRF-checked, `user` is the session's user (a page
    that asks for it sends a visitor without a session to sign in), errors shown as a page."""
    return Router(
        path=path,
        route_handlers=list(handlers),
        guards=[auth.csrf, *guards],
        dependencies={"user": Provide(auth.current)},
        exception_handlers=page_exception_handlers(auth),
        include_in_schema=False,
    )


def json_router(
    auth: WebAuth, path: str, handlers: Sequence[ControllerRouterHandler], *, guards: Sequence[Guard] = ()
) -> Router:
    """JSON routes for the pages' scripts at `path`, answered in the API's error shape: the session
    cookie stands for `Authorization`, and every unsafe method needs the CSRF header. Mounting an
    API controller here (`/app` + `/v1/jobs`) serves the very same handlers to the pages."""
    return Router(
        path=path,
        route_handlers=list(handlers),
        guards=[auth.csrf, *guards],
        dependencies={"user": Provide(auth.current)},
        include_in_schema=False,
    )
