"""The OpenAPI document tells the truth about errors: each status an operation answers is listed,
with the one error body (`Error`), and what a request really gets matches what is listed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from infra.accounts import NewUser
from infra.resources import Resources
from tests.support import auth, make_user, pose12_body

Client = TestClient[Litestar]
Document = dict[str, Any]
ERROR_REF = "#/components/schemas/Error"
METHODS = ("get", "put", "post", "delete", "patch")
# Answered in the payment channels' own protocols (WeChat Pay's `{"code": "FAIL"}`, Alipay's `fail`),
# to the channels, not to API clients: this API's error body is not theirs to send.
CHANNEL_PROTOCOL = ("/v1/payments/wechat/notify", "/v1/payments/alipay/notify")


@pytest.fixture
def document(api: Client) -> Document:
    answer = api.get("/schema/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def operations(document: Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def conforms(value: Any, schema: dict[str, Any], document: Document) -> bool:
    """Enough JSON Schema for the error body: $ref, objects (closed when they list properties), strings."""
    if "$ref" in schema:
        return conforms(value, document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], document)
    if schema.get("type") == "string":
        return isinstance(value, str)
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        return (
            isinstance(value, dict)
            and set(schema.get("required", ())) <= set(value)
            and (not properties or set(value) <= set(properties))
            and all(conforms(value[name], sub, document) for name, sub in properties.items() if name in value)
        )
    return False


def assert_error_answer(resp: httpx.Response, status: int, document: Document) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    assert conforms(resp.json(), {"$ref": ERROR_REF}, document), resp.text


def documented(document: Document, path: str, method: str) -> dict[str, Any]:
    return dict(document["paths"][path][method]["responses"])


# --- POST /v1/jobs: each error status listed and really answered -------------------------------------


def malformed_json(api: Client, resources: Resources) -> httpx.Response:
    user = make_user(resources, credits=1)
    headers = {**auth(user), "Content-Type": "application/json"}
    return api.post("/v1/jobs", content=b'{"kind": "model_pose12",', headers=headers)


def no_credentials(api: Client, resources: Resources) -> httpx.Response:
    return api.post("/v1/jobs", json=pose12_body())


def no_credits(api: Client, resources: Resources) -> httpx.Response:
    user = make_user(resources, credits=0)
    return api.post("/v1/jobs", json=pose12_body(), headers=auth(user))


def key_reused_with_another_body(api: Client, resources: Resources) -> httpx.Response:
    user = make_user(resources, credits=2)
    headers = {**auth(user), "Idempotency-Key": "first-job"}
    assert api.post("/v1/jobs", json=pose12_body(scene="street"), headers=headers).status_code == 202
    return api.post("/v1/jobs", json=pose12_body(scene="studio"), headers=headers)


def body_too_large(api: Client, resources: Resources) -> httpx.Response:
    user = make_user(resources, credits=1)
    headers = {**auth(user), "Content-Type": "application/json"}
    return api.post("/v1/jobs", content=b" " * (25 * 1024 * 1024), headers=headers)


def plain_text(api: Client, resources: Resources) -> httpx.Response:
    user = make_user(resources, credits=1)
    headers = {**auth(user), "Content-Type": "text/plain"}
    return api.post("/v1/jobs", content=b'{"kind": "model_pose12"}', headers=headers)


def unknown_kind(api: Client, resources: Resources) -> httpx.Response:
    user = make_user(resources, credits=1)
    return api.post("/v1/jobs", json={"kind": "no_such_kind", "input": {}}, headers=auth(user))


def over_the_rate_limit(api: Client, resources: Resources) -> httpx.Response:
    resources.settings = resources.settings.with_(rate_jobs_per_minute=1)
    user = make_user(resources, credits=2)
    assert api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).status_code == 202
    return api.post("/v1/jobs", json=pose12_body(), headers=auth(user))


JOB_ERRORS: dict[int, Callable[[Client, Resources], httpx.Response]] = {
    400: malformed_json,
    401: no_credentials,
    402: no_credits,
    409: key_reused_with_another_body,
    413: body_too_large,
    415: plain_text,
    422: unknown_kind,
    429: over_the_rate_limit,
}


@pytest.mark.parametrize("status", sorted(JOB_ERRORS))
def test_post_jobs_lists_the_status_with_the_error_body(document: Document, status: int) -> None:
    listed = documented(document, "/v1/jobs", "post")

    assert listed[str(status)]["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}
    assert listed[str(status)]["description"]


@pytest.mark.parametrize("status", sorted(JOB_ERRORS))
def test_post_jobs_answers_the_listed_status_in_the_error_body(
    api: Client, resources: Resources, document: Document, status: int
) -> None:
    resp = JOB_ERRORS[status](api, resources)

    assert_error_answer(resp, status, document)


def test_a_429_says_when_to_try_again_as_documented(api: Client, resources: Resources, document: Document) -> None:
    resp = over_the_rate_limit(api, resources)

    assert int(resp.headers["Retry-After"]) >= 0
    assert "Retry-After" in documented(document, "/v1/jobs", "post")["429"]["headers"]


# --- the document as a whole ---------------------------------------------------------------------------


def test_the_error_component_is_the_one_error_shape(document: Document) -> None:
    body = {"error": {"code": "not_found", "message": "no job x", "details": {"job_id": "x"}}}

    assert conforms(body, {"$ref": ERROR_REF}, document)
    assert not conforms({"error": {"code": "x", "message": "y"}}, {"$ref": ERROR_REF}, document)
    assert not conforms({"status_code": 400, "detail": "Bad Request"}, {"$ref": ERROR_REF}, document)


def test_every_documented_4xx_has_the_error_body(document: Document) -> None:
    wrong = [
        (method.upper(), path, status)
        for path, method, operation in operations(document)
        for status, answer in operation["responses"].items()
        if status.startswith("4") and answer.get("content") != {"application/json": {"schema": {"$ref": ERROR_REF}}}
    ]

    assert wrong == []


def test_a_405_names_the_methods_the_path_accepts(api: Client, document: Document) -> None:
    resp = api.delete("/v1/jobs")

    assert_error_answer(resp, 405, document)
    assert resp.json()["error"]["code"] == "method_not_allowed"
    allowed = {method.strip() for method in resp.headers["Allow"].split(",")}
    assert {method.upper() for method in document["paths"]["/v1/jobs"]} <= allowed
    assert "DELETE" not in allowed


def test_every_json_body_answers_415_to_plain_text(api: Client, resources: Resources, document: Document) -> None:
    """One guard for every route that reads a JSON body, before it reads it (or asks who is calling)."""
    admin = resources.accounts.create_user("13900000000", 1, now=datetime.now(UTC), role="admin")
    json_bodies = [
        (method, path)
        for path, method, operation in operations(document)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]

    answers = {
        (method, path): api.request(
            method, _filled(path), content=b"{}", headers={**auth(admin), "Content-Type": "text/plain"}
        )
        for method, path in json_bodies
    }

    assert {("post", "/v1/jobs"), ("post", "/v1/uploads"), ("post", "/v1/auth/login")} <= set(json_bodies)
    for (method, path), resp in answers.items():
        assert_error_answer(resp, 415, document)
        assert "415" in documented(document, path, method), (method, path)


@pytest.mark.parametrize("caller", ["nobody", "user", "admin"])
def test_every_4xx_a_plain_request_meets_is_documented(
    api: Client, resources: Resources, document: Document, caller: str
) -> None:
    """Each operation, called with an id that names nothing and an empty JSON body where it takes one:
    whatever 4xx it answers is listed for it, in the error body."""
    headers = _credentials(resources, caller)

    answers = {
        (method, path): api.request(
            method,
            _filled(path),
            headers=headers,
            **({"json": {}} if "requestBody" in operation else {}),
        )
        for path, method, operation in operations(document)
        if path not in CHANNEL_PROTOCOL
    }

    undocumented = [
        (method.upper(), path, resp.status_code)
        for (method, path), resp in answers.items()
        if 400 <= resp.status_code < 500 and str(resp.status_code) not in documented(document, path, method)
    ]
    assert undocumented == []
    for resp in answers.values():
        if 400 <= resp.status_code < 500:
            assert_error_answer(resp, resp.status_code, document)
    if caller == "user":  # 403 is listed on exactly the operations that refuse a non-admin
        refused = {key for key, resp in answers.items() if resp.status_code == 403}
        assert refused == {key for key in answers if "403" in documented(document, key[1], key[0])}
        assert refused


def _credentials(resources: Resources, caller: str) -> dict[str, str]:
    if caller == "nobody":
        return {}
    user: NewUser = (
        make_user(resources, credits=1)
        if caller == "user"
        else resources.accounts.create_user("13900000000", 1, now=datetime.now(UTC), role="admin")
    )
    return auth(user)


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-id", path)
