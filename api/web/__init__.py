"""The web front ends, served by the API: the user's workbench at `/app` (api/web/workbench.py)
and the operators' console at `/console`.

Server-rendered Jinja2 pages (api/web/templates/) with a little hand-written JavaScript and CSS
(api/web/static/, served at /static/web): one language, no build step, nothing from a CDN.
Sessions, CSRF and the admin guard: api/web/session.py; rendering, routers, the error page:
api/web/pages.py; words and their zh-CN translation: api/web/i18n.py.
"""

from __future__ import annotations

from litestar import Router
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from api.web import console, pages, workbench
from api.web.session import WebAuth
from infra.resources import Resources


def routers(resources: Resources) -> list[Router]:
    """Every web route, for `create_app`: static files, the workbench, the console."""
    auth = WebAuth(resources)
    static = create_static_files_router(
        path=pages.STATIC_PATH, directories=[pages.STATIC], name="web-static", include_in_schema=False
    )
    return [static, *workbench.routers(auth), *console.routers(auth)]


def template_config() -> TemplateConfig:  # type: ignore[type-arg]
    return pages.template_config()
