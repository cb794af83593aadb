"""A bounded schemathesis run over the API's own `/schema/openapi.json`: whatever a client sends,
no operation answers 5xx (`not_a_server_error`), and each documented answer has its documented
body, content type and headers.

- In-process: `create_app(resources)` over the test database and Redis, reached through ASGI; the
  payment channels are their simulators (in memory), so notifications are really verified.
- Repeatable and bounded: a fixed seed, derandomized, no example database; schemathesis' examples,
  coverage and fuzzing phases with valid and invalid data, `EXAMPLES` fuzzed cases per operation.
- Passes: every operation as a member with credits; the admin routes as an admin; the operations
  whose input the document leaves open, steered (below); the settings an admin may change, then
  what reads them; every JSON body replaced by bytes no decoder takes whole.
- Steered: a job's `input` is open in the document (each kind checks its own in the handler), and
  the notifications and callbacks read bodies it does not describe. The steered pass gives each
  case a valid kind and input, a configured platform, a plan, or a body and headers in the
  provider's own form, so the fuzzed fields beside them (`external_id`, `webhook_url`,
  `Idempotency-Key`, rows) are reached, and now and then a URL naming a host.
- Offline: only loopback names resolve (any other name fails to), and a connection to any address
  but loopback is refused and recorded; every call asserts that none was tried. A generated
  `image_url` or `webhook_url` is refused with 422 before anything leaves the machine.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import dramatiq
import pytest
import schemathesis
from hypothesis import settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis import Case
from schemathesis.python import asgi

from api.app import create_app
from api.jobs import prefer_wait
from api.payments import Channels
from infra.config_store import ADJUSTABLE
from infra.resources import Resources
from tests.support import GARMENT, auth, make_user, payment_transport, with_payments
from vendors.sim.alipay import AlipaySim
from vendors.sim.wechatpay import WechatPaySim

EXAMPLES = 40
CONFIG: dict[str, Any] = {
    "seed": 11,
    "generation": {
        "mode": "all",
        "max-examples": EXAMPLES,
        "deterministic": True,
        "database": "none",
        "allow-x00": True,
    },
    "phases": {"stateful": {"enabled": False}},
    "request-timeout": 20,  # a hang fails the run instead of stalling it
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],  # a busy machine is no failure
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
    },
}
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

VALID_JOBS = [
    ("video", {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a dress in the wind"}),
    ("model_pose12", {"image_url": GARMENT, "scene": "street", "category": "dress"}),
    ("basic_clean", {"image_url": GARMENT}),
    ("model_3d", {"version": "3.0", "prompt": "a chair"}),
]
WECHATPAY_SERIAL = "PUB_KEY_ID_0114000000000000000000000001"
ALIPAY_APP_ID = "2021000000000001"
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)
PROVIDER_HEADERS = st.dictionaries(
    st.sampled_from(
        ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial",
         "Wechatpay-Signature-Type", "X-Webhook-Signature", "X-Webhook-Timestamp"]
    ),
    PRINTABLE | st.sampled_from([WECHATPAY_SERIAL, "WECHATPAY2-SHA256-RSA2048", "1700000000", "c2lnbmF0dXJl"]),
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FORM = st.dictionaries(
    st.sampled_from(["sign", "sign_type", "app_id", "out_trade_no", "trade_no", "trade_status", "total_amount",
                     "notify_id"]) | st.text(max_size=12),
    st.text(max_size=24) | st.sampled_from(["RSA2", ALIPAY_APP_ID, "TRADE_SUCCESS", "TRADE_CLOSED", "1.00", "-1"]),
    max_size=8,
)  # fmt: skip
PROVIDER_BODIES = st.one_of(
    st.binary(max_size=300),
    FORM.map(lambda form: urlencode(form).encode()),
    JSON.map(lambda value: json.dumps(value).encode()),
    JSON.map(lambda value: json.dumps({"data": {"taskId": value}, "resource": value}).encode()),
)
UNREADABLE = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda raw: not _utf8(raw)),
    st.integers(1_000, 3_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1_000, 3_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    JSON.map(lambda value: json.dumps({"kind": "video", "input": value}).encode()).flatmap(
        lambda raw: st.integers(1, len(raw) - 1).map(lambda cut: raw[:cut])
    ),
)
URLS = st.builds(
    "{}://{}{}/{}".format,
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(com|cn|net|example)", fullmatch=True)
    | st.sampled_from(["localhost", "10.0.0.8", "192.168.1.1", "169.254.169.254", "127.0.0.1", "0.0.0.0"]),
    st.sampled_from(["", ":80", ":8080", ":1"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?/"), max_size=20),
)
NUMBERS = st.sampled_from(["0", "-1", "0.5", "1e309", "99999999999999999999", ""]) | st.integers().map(str)
READERS = ("/v1/plans", "/v1/pricing", "/v1/membership", "/v1/admin/config", "/v1/admin/scheduler", "/v1/jobs")


class Network:
    """Which names were looked up and which connections were tried, other than loopback's."""

    def __init__(self) -> None:
        self.lookups: list[str] = []
        self.connects: list[Any] = []


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    seen = Network()
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in LOOPBACK:
            return real_getaddrinfo(host, *args, **kwargs)
        seen.lookups.append(name)
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: no network in the fuzz run")

    def connect(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            seen.connects.append(address)
            raise ConnectionRefusedError(f"{address}: no network in the fuzz run")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def channels(resources: Resources) -> Channels:
    """WeChat Pay and Alipay configured, their simulators behind an in-memory transport."""
    wechat = WechatPaySim(mchid="1900000109", appid="wx8888888888888888", seed=3)
    wechat.serial = WECHATPAY_SERIAL  # a serial the drawn notification headers name now and then
    ali = AlipaySim(app_id=ALIPAY_APP_ID, seed=3)
    resources.settings = with_payments(resources.settings, wechat, ali, serial=WECHATPAY_SERIAL).with_(
        rate_jobs_per_minute=100_000,
        rate_jobs_per_minute_ip=100_000,
        rate_auth_per_minute_ip=100_000,
    )
    return Channels.from_settings(resources.settings, transport=payment_transport(wechat, ali))


@pytest.fixture
def api_schema(resources: Resources, broker: dramatiq.Broker, channels: Channels, network: Network) -> Iterator[Any]:
    app = create_app(resources, channels=channels)
    yield schemathesis.openapi.from_asgi("/schema/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    asgi.shutdown_lifespans()  # schemathesis keeps each app it served started until told otherwise


@pytest.fixture
def user(resources: Resources) -> dict[str, str]:
    return auth(make_user(resources, credits=1_000_000, plan="pro"))


@pytest.fixture
def admin(resources: Resources) -> dict[str, str]:
    return auth(resources.accounts.create_user("13900000000", 1_000_000, now=datetime.now(UTC), role="admin"))


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the running test through `Item._nodeid`, an attribute pytest 9.2
    no longer has (its `nodeid` is computed); give it one so the run reports each operation."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_no_request_of_a_user_meets_a_server_error(case: Case, user: dict[str, str], network: Network) -> None:
    call(case, user, network)


@schema.include(path_regex="^/v1/admin/").parametrize()
def test_no_request_of_an_admin_meets_a_server_error(case: Case, admin: dict[str, str], network: Network) -> None:
    call(case, admin, network)


@schema.include(func=lambda ctx: ctx.operation.label in STEERING).parametrize()
@schema.given(data=st.data())
def test_no_steered_request_meets_a_server_error(
    case: Case, data: st.DataObject, user: dict[str, str], network: Network
) -> None:
    STEERING[case.operation.label](case, data)
    call(case, user, network)


@schema.include(name="PUT /v1/admin/config/{key}").parametrize()
@schema.given(data=st.data())
def test_no_adjusted_setting_meets_a_server_error(
    case: Case, data: st.DataObject, admin: dict[str, str], resources: Resources, network: Network
) -> None:
    """A setting an admin may change, set to its default with one of its numbers drawn anew (or to
    any text): whatever is accepted must not break what reads it afterwards."""
    key = data.draw(st.sampled_from(sorted(ADJUSTABLE)), label="key")
    default = str(getattr(resources.settings, key))
    spans = [match.span() for match in re.finditer(r"\d+", default)]
    start, end = data.draw(st.sampled_from(spans), label="number")
    value = default[:start] + data.draw(NUMBERS, label="replacement") + default[end:]
    case.path_parameters = {"key": key}
    case.body = {"value": data.draw(st.just(value) | st.text(max_size=40), label="value")}

    call(case, admin, network)

    for path in READERS:
        after = case.operation.schema[path]["GET"].Case().call(headers=admin)
        assert after.status_code < 500, (key, case.body, path, after.text)


@settings(max_examples=EXAMPLES // 4)  # eleven operations, each body the same kind of nonsense
@schema.include(func=lambda ctx: "application/json" in _body_types(ctx.operation)).parametrize()
@schema.given(data=st.data())
def test_no_unreadable_json_body_meets_a_server_error(
    case: Case, data: st.DataObject, admin: dict[str, str], network: Network
) -> None:
    """Bytes sent as JSON that no JSON decoder takes whole: not UTF-8, nested thousands deep, cut short."""
    case.body = data.draw(UNREADABLE, label="body")
    case.media_type = "application/json"

    call(case, admin, network)


def call(case: Case, credentials: dict[str, str], network: Network) -> None:
    if case.headers and prefer_wait(case.headers.get("Prefer")):
        case.headers["Prefer"] = "return=minimal"  # no worker runs here: a wait would last its full N s

    case.call_and_validate(headers=credentials)

    assert network.connects == []


def test_a_generated_url_is_refused_without_leaving_the_machine(
    api: TestClient[Litestar], resources: Resources, network: Network
) -> None:
    """The resolver the fuzzed URLs meet is the stub: a name is looked up there, and refused."""
    headers = auth(make_user(resources, credits=1))
    body = {"kind": "basic_clean", "input": {"image_url": "http://images.example/a.png"}}

    image = api.post("/v1/jobs", json=body, headers=headers)
    hook = api.post("/v1/keys", json={"webhook_url": "https://hooks.example/in"}, headers=headers)

    assert (image.status_code, hook.status_code) == (422, 422), (image.text, hook.text)
    assert network.lookups == ["images.example", "hooks.example"]
    assert network.connects == []


def _body_types(operation: Any) -> dict[str, Any]:
    return dict(operation.definition.raw.get("requestBody", {}).get("content", {}))


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


# --- steering: cases past the first check, into what the document leaves open -------------------------


def _job(case: Case, data: st.DataObject) -> None:
    if isinstance(case.body, dict):
        case.body["kind"], case.body["input"] = data.draw(st.sampled_from(VALID_JOBS), label="job")
        _urls(case.body, case.body["input"], data)


def _batch(case: Case, data: st.DataObject) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("defaults"), dict) and isinstance(body.get("rows"), list):
        defaults = body["defaults"]
        defaults["kind"], defaults["input"] = data.draw(st.sampled_from(VALID_JOBS), label="job")
        _urls(defaults, defaults["input"], data)
        for row in body["rows"]:
            if isinstance(row, dict):
                row["input"] = {}


def _key(case: Case, data: st.DataObject) -> None:
    if isinstance(case.body, dict):
        _urls(case.body, {}, data)


def _urls(body: dict[str, Any], job_input: dict[str, Any], data: st.DataObject) -> None:
    """Now and then a URL that names a host: refused before a fetch (a name resolves nowhere here)."""
    if data.draw(st.booleans(), label="webhook"):
        body["webhook_url"] = data.draw(URLS, label="webhook_url")
    if "image_url" in job_input and data.draw(st.booleans(), label="image"):
        job_input["image_url"] = data.draw(URLS, label="image_url")


def _platform(case: Case, data: st.DataObject) -> None:
    case.path_parameters = {"platform": data.draw(st.sampled_from(["wechat", "douyin"]), label="platform")}
    _provider_body(case, data)


def _plan(case: Case, data: st.DataObject) -> None:
    if isinstance(case.body, dict):
        case.body["plan"] = data.draw(st.sampled_from(["pro", "pro_plus", "enterprise", "free"]), label="plan")


def _provider_body(case: Case, data: st.DataObject) -> None:
    case.headers = {**(case.headers or {}), **data.draw(PROVIDER_HEADERS, label="headers")}
    case.body = data.draw(PROVIDER_BODIES, label="body")
    case.media_type = "application/octet-stream"


STEERING: dict[str, Callable[[Case, st.DataObject], None]] = {
    "POST /v1/jobs": _job,
    "POST /v1/batches": _batch,
    "POST /v1/keys": _key,
    "POST /v1/orders": _plan,
    "GET /v1/callbacks/moderation/{platform}": _platform,
    "POST /v1/callbacks/moderation/{platform}": _platform,
    "POST /v1/callbacks/kie": _provider_body,
    "POST /v1/payments/wechat/notify": _provider_body,
    "POST /v1/payments/alipay/notify": _provider_body,
}
