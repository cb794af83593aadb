"""The OpenAPI UI at `/schema`, whole from this API: it renders with no internet.

Litestar's UIs load their scripts, styles, fonts and favicon from CDNs by default, and a machine
without internet gets a blank page. Here Swagger UI's files come from the `litestar-offline-docs`
wheel (installed with the rest of the dependencies) and are served under `ASSETS`; the favicon is
inline and nothing else is fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import litestar_offline_docs
from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS: Final = "/schema/assets"
_FILES: Final = Path(litestar_offline_docs.__file__).parent / "static"
_NO_FAVICON: Final = "<link rel='icon' href='data:,'>"  # no request at all, not even to us


def openapi_config() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        path=["/", "/swagger"],
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=_NO_FAVICON,
    )
    return OpenAPIConfig(title="genq", version="1", path="/schema", render_plugins=[swagger])


def assets_router() -> Router:
    return create_static_files_router(path=ASSETS, directories=[_FILES], name="docs-assets")
