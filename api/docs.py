"""The OpenAPI document and its UI at `/schema`: whole from this API, and true about errors.

Offline: Litestar's UIs load their scripts, styles, fonts and favicon from CDNs by default, and a
machine without internet gets a blank page. Here Swagger UI's files come from the
`litestar-offline-docs` wheel (installed with the rest of the dependencies) and are served under
`ASSETS`; the favicon is inline and nothing else is fetched.

Errors: every error answer has one body, `errors.Error` (`{"error": {"code", "message",
"details"}}`), and the document says so for each status an operation answers. A route names the
statuses its own logic answers in its decorator, `responses=docs.errors(401, 404)`; the ones the
request's form implies are added by `settle`, to every operation that has that form: a JSON body
can be malformed (400), too large (413), in another format (415, see `app.json_bodies_only`) or
invalid (422); a query or header parameter can be invalid (422). Litestar's own guesses, in its
own exception shape (a 400 `ValidationException` on every route with a parameter), are dropped:
this API answers none of them in that shape (a failed validation is a 422 in ours).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Final

import litestar_offline_docs
import msgspec
from litestar import Router
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPI
from litestar.static_files import create_static_files_router

from api.errors import Error

ASSETS: Final = "/schema/assets"
_FILES: Final = Path(litestar_offline_docs.__file__).parent / "static"
_NO_FAVICON: Final = "<link rel='icon' href='data:,'>"  # no request at all, not even to us

ERROR_REF: Final = "#/components/schemas/Error"
# When each status is answered, and its `error.code`; a route may say it in its own words instead.
WHEN: Final[dict[int, str]] = {
    400: "`bad_request`: the body is not JSON or not UTF-8, or a value cannot be stored (a NUL byte).",
    401: "`unauthorized`: no `Authorization: Bearer`, an unknown or revoked key, an expired token or a disabled user.",
    402: "`insufficient_credits`: the balance does not cover the price (`details.needed`, `details.balance`).",
    403: "`forbidden`: the caller is not an admin.",
    404: "`not_found`: nothing of yours has this id.",
    409: "`conflict`: the request does not fit the current state.",
    413: "`request_entity_too_large`: the body is larger than this API reads.",
    415: "`unsupported_media_type`: the body is not `application/json`.",
    422: "`invalid_input`: a field, parameter or header is invalid; `details.field` names it.",
    429: "`rate_limited`: too many requests; `Retry-After` (and `details.retry_after_s`) says when to try again.",
}
_JSON_BODY: Final = (400, 413, 415, 422)
_PARAMETERS: Final = (422,)
_RETRY_AFTER: Final = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def errors(*statuses: int | tuple[int, str]) -> dict[int, ResponseSpec]:
    """`responses=` for a route: each status with the `Error` body, described by `WHEN` or by the
    route's own `(status, "when")`."""
    described = (s if isinstance(s, tuple) else (s, WHEN[s]) for s in statuses)
    return {status: ResponseSpec(Error, description=when, generate_examples=False) for status, when in described}


def settle(document: dict[str, Any]) -> dict[str, Any]:
    """The document as served: each operation's implied error statuses added, Litestar's guesses
    in its own shape dropped, `Retry-After` on every 429, `Error` among the components."""
    _, components = msgspec.json.schema_components([Error], ref_template="#/components/schemas/{name}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    for item in document.get("paths", {}).values():
        for operation in (item[method] for method in _METHODS if method in item):
            _settle(operation)
    return document


def _settle(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in [s for s, answer in responses.items() if _litestar_shape(answer)]:
        del responses[status]
    for status in _implied(operation):
        responses.setdefault(str(status), _answer(WHEN[status]))
    if "429" in responses:
        responses["429"].setdefault("headers", {})["Retry-After"] = _RETRY_AFTER
    operation["responses"] = dict(sorted(responses.items()))


def _implied(operation: dict[str, Any]) -> list[int]:
    json_body = "application/json" in operation.get("requestBody", {}).get("content", {})
    parameters = any(p.get("in") in ("query", "header") for p in operation.get("parameters", []))
    return sorted({*(_JSON_BODY if json_body else ()), *(_PARAMETERS if parameters else ())})


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}


def _litestar_shape(answer: dict[str, Any]) -> bool:
    """Litestar's body for an HTTPException (`status_code`, `detail`, `extra`), alone or as one of many."""
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    shapes = schema.get("oneOf", [schema])
    return any({"status_code", "detail"} <= set(shape.get("properties", {})) for shape in shapes)


class _Document(OpenAPI):
    def to_schema(self) -> dict[str, Any]:
        return settle(super().to_schema())


class _Config(OpenAPIConfig):
    """Litestar's config, whose document is served `settle`d (built once, at the first request)."""

    def to_openapi_schema(self) -> OpenAPI:
        built = super().to_openapi_schema()
        return _Document(**{f.name: getattr(built, f.name) for f in fields(built) if f.init})


def openapi_config() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        path=["/", "/swagger"],
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=_NO_FAVICON,
    )
    return _Config(title="genq", version="1", path="/schema", render_plugins=[swagger])


def assets_router() -> Router:
    return create_static_files_router(path=ASSETS, directories=[_FILES], name="docs-assets")
