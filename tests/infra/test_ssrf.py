"""SSRF, closed: address rules, one resolution pinned to the checked address, every hop checked.

Names are resolved by a stub (never the real DNS), and what would connect is a recording transport
or a server on 127.0.0.1: `Net` records every lookup and every request sent after the check.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import dramatiq
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from litestar.testing import TestClient

from api.app import create_app
from domain.errors import InvalidInput
from domain.jobs import JobStatus
from infra.fetch import FetchError, fetch
from infra.images import Allowlist, ImageInspector, check_public_url
from infra.netguard import IP, AddressRefused, GuardTransport, NetGuard, is_public
from infra.resources import Resources
from infra.settings import Settings
from tests.support import SAMPLES_PORT, auth, make_user, pose12_body, terminal_job, wait_for
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.samples import sized_image
from workers.boot import download_client, webhook_client
from workers.runtime import Runtime

PUBLIC = "93.184.216.34"
PNG = sized_image(256, 256, "PNG")
FIELD = "input.image_url"

# Every form the issue names, as a URL naming the address itself (no lookup needed to refuse it).
REFUSED_URLS = [
    "http://[::127.0.0.1]/x.png",  # IPv4-compatible
    "http://[::7f00:1]/x.png",  # the same, in hex
    "http://[::a9fe:a9fe]/latest/meta-data/",  # IPv4-compatible cloud metadata
    "http://[::ffff:127.0.0.1]/x.png",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 (well-known prefix)
    "http://[64:ff9b::127.0.0.1]/x.png",
    "http://[64:ff9b:1::5db8:d822]/x.png",  # NAT64 local-use prefix: local by definition
    "http://[2002:a9fe:a9fe::]/latest/meta-data/",  # 6to4
    "http://[2002:7f00:1::1]/x.png",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x.png",  # Teredo, client 127.0.0.1 (XOR 0xffffffff)
    "http://192.0.0.8/x.png",  # IETF protocol assignments: Python calls it global
    "http://192.0.0.170/x.png",
    "http://192.88.99.1/x.png",  # 6to4 relay anycast: global to Python
    "http://100.64.0.1/x.png",  # shared address space
    "http://198.18.0.1/x.png",  # benchmarking
    "http://224.0.0.1/x.png",  # multicast
    "http://239.255.255.250:1900/x.png",
    "http://240.0.0.1/x.png",  # reserved
    "http://255.255.255.255/x.png",
    "http://0.0.0.0/x.png",  # "this network"
    "http://0.1.2.3/x.png",
    "http://[::]/x.png",
    "http://[::1]/x.png",
    "http://[fe80::1%25eth0]/x.png",  # link-local, with a zone
    "http://[fc00::1]/x.png",
    "http://[ff02::1]/x.png",
    "http://169.254.169.254/latest/meta-data/",
]

UNUSABLE_URLS = [
    "http://0177.0.0.1/x.png",  # octal
    "http://0x7f.0.0.1/x.png",  # hex-dotted
    "http://0x7f000001/x.png",
    "http://2130706433/x.png",  # one integer
    "http://127.1/x.png",  # short form
    "http://127.0.0.1./x.png",  # trailing dot
    "http://[::1/x.png",  # broken IPv6
    "http://a\x00b.test/x.png",  # NUL
    "http://a.test/x.png\r\nX-Injected: 1",  # CR/LF
]


class Net:
    """The hook on the resolve/connect path: a stub resolver (each lookup takes the next answer of
    its name; the last repeats) and a recording transport answering for every address it is sent to."""

    def __init__(self, answers: dict[str, list[str]] | None = None, respond: Any = None) -> None:
        self.answers = {name: list(each) for name, each in (answers or {}).items()}
        self.lookups: list[str] = []
        self.sent: list[tuple[str, str, str | None]] = []  # (address sent to, Host header, TLS name)
        self._respond = respond or (lambda request: httpx.Response(200, content=PNG))

    def resolve(self, host: str, port: int) -> list[IP]:
        self.lookups.append(host)
        queue = self.answers.get(host, [""])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in answer.split(",") if a]

    def handle(self, request: httpx.Request) -> httpx.Response:
        sni = request.extensions.get("sni_hostname")
        self.sent.append((request.url.host, request.headers["host"], sni))
        response: httpx.Response = self._respond(request)
        return response

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def inspector(self, allow: str = "") -> ImageInspector:
        return ImageInspector(
            httpx.Client(transport=self.transport()),
            Allowlist.parse(allow),
            aclient=httpx.AsyncClient(transport=self.transport()),
            resolver=self.resolve,
        )


# --- the address rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822",
     "2002:5db8:d822::1", "2001:0:4136:e378:8000:63bf:a247:27dd"],  # Teredo, client 93.184.216.34
)  # fmt: skip
def test_public_addresses_and_forms_embedding_a_public_ipv4_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_each_non_public_form_is_refused_before_any_lookup_or_connection(url: str) -> None:
    net = Net()

    with pytest.raises(AddressRefused, match="not a public address") as refused:
        net.inspector().from_url(FIELD, url)

    assert refused.value.field == FIELD and refused.value.details["reason"] == "not_public_address"
    assert net.lookups == [] and net.sent == []


@pytest.mark.parametrize(
    "answer", ["::ffff:10.0.0.1", "::a9fe:a9fe", "64:ff9b::a9fe:a9fe", "2002:c0a8:101::", "192.0.0.8", "100.64.1.1",
               f"{PUBLIC},10.0.0.1"],  # every answer is checked, not the first only
)  # fmt: skip
def test_a_name_resolving_to_a_non_public_address_is_refused_without_connecting(answer: str) -> None:
    net = Net({"evil.test": [answer]})

    with pytest.raises(AddressRefused, match=r"evil\.test is not a public address"):
        net.inspector().from_url(FIELD, "https://evil.test/x.png")

    assert net.lookups == ["evil.test"] and net.sent == []


@pytest.mark.parametrize("url", UNUSABLE_URLS)
def test_an_unusable_url_is_invalid_input_not_a_lookup(url: str) -> None:
    net = Net()

    with pytest.raises(InvalidInput, match="not a usable URL") as refused:
        net.inspector().from_url(FIELD, url)

    assert not isinstance(refused.value, AddressRefused) and refused.value.field == FIELD
    assert net.lookups == [] and net.sent == []


# --- pinning ------------------------------------------------------------------------------------------


def test_the_connection_goes_to_the_address_checked_not_a_second_answer() -> None:
    """DNS rebinding: public when checked, loopback a moment later; the later answer is never asked."""
    net = Net({"rebind.test": [PUBLIC, "127.0.0.1"]})

    facts = net.inspector().from_url(FIELD, "https://rebind.test/cat.png")

    assert (facts.width, facts.height) == (256, 256)
    assert net.lookups == ["rebind.test"]
    assert net.sent == [(PUBLIC, "rebind.test", "rebind.test")]  # to the address; Host and TLS name kept


def test_the_async_check_is_pinned_the_same_way() -> None:
    net = Net({"rebind.test": [PUBLIC, "127.0.0.1"]})

    facts = anyio.run(net.inspector().afrom_url, FIELD, "https://rebind.test/cat.png")

    assert (facts.width, facts.height, facts.format) == (256, 256, "PNG")
    assert net.lookups == ["rebind.test"] and net.sent == [(PUBLIC, "rebind.test", "rebind.test")]


@pytest.mark.parametrize("url", ["http://[::ffff:127.0.0.1]/x.png", "http://[64:ff9b::a9fe:a9fe]/", "http://0x7f.1/"])
def test_the_async_check_refuses_what_the_sync_one_does(url: str) -> None:
    net = Net()

    with pytest.raises(InvalidInput) as refused:
        anyio.run(net.inspector().afrom_url, FIELD, url)

    assert refused.value.field == FIELD
    assert net.lookups == [] and net.sent == []


@pytest.mark.parametrize("fetch_async", [False, True], ids=["sync", "async"])
def test_a_redirect_to_a_name_on_a_private_address_is_refused(fetch_async: bool) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://intranet.test/secret.png"})

    net = Net({"cdn.test": [PUBLIC], "intranet.test": ["10.1.2.3"]}, respond)
    inspector = net.inspector()

    with pytest.raises(AddressRefused, match=r"intranet\.test is not a public address"):
        if fetch_async:
            anyio.run(inspector.afrom_url, FIELD, "https://cdn.test/a.png")
        else:
            inspector.from_url(FIELD, "https://cdn.test/a.png")

    assert net.sent == [(PUBLIC, "cdn.test", "cdn.test")]


def test_the_async_check_caps_the_size_from_the_declared_length() -> None:
    big = Net({"cdn.test": [PUBLIC]}, lambda request: httpx.Response(200, content=b"x" * (8 * 1024 * 1024 + 1)))

    with pytest.raises(InvalidInput, match="over 8388608 bytes"):
        anyio.run(big.inspector().afrom_url, FIELD, "https://cdn.test/huge.png")


@pytest.mark.parametrize("fetch_async", [False, True], ids=["sync", "async"])
def test_the_allow_listed_loopback_sample_server_is_fetched_through_the_pin(fetch_async: bool) -> None:
    net = Net({"samples.test": ["127.0.0.1"]})
    client, aclient = httpx.Client(), httpx.AsyncClient()
    inspector = ImageInspector(client, Allowlist.parse(f"127.0.0.1:{SAMPLES_PORT}"), aclient=aclient,
                               resolver=net.resolve)  # fmt: skip
    url = f"http://samples.test:{SAMPLES_PORT}/samples/300x200.webp"

    facts = anyio.run(inspector.afrom_url, FIELD, url) if fetch_async else inspector.from_url(FIELD, url)

    assert (facts.width, facts.height, facts.format) == (300, 200, "WEBP")
    assert net.lookups == ["samples.test"]


# --- TLS: the certificate is verified for the name, on the pinned connection --------------------------


@contextmanager
def tls_server(tmp_path: Path, cert_name: str) -> Iterator[tuple[int, ssl.SSLContext, list[str]]]:
    """An HTTPS server on 127.0.0.1 presenting a self-signed certificate for `cert_name`; yields its
    port, a client context trusting that certificate, and what it saw (TLS server names, Host)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cert_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cert_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"host={self.headers['Host']}")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    def on_sni(sock: ssl.SSLObject | ssl.SSLSocket, sni: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(f"sni={sni}")

    server_ctx.sni_callback = on_sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ssl.create_default_context(cafile=tmp_path / "cert.pem"), seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def pinned_https(verify: ssl.SSLContext, net: Net) -> httpx.Client:
    guard = NetGuard(Allowlist.parse("127.0.0.1/32"), resolve=net.resolve)
    return httpx.Client(transport=GuardTransport(guard, httpx.HTTPTransport(verify=verify)))


def test_a_pinned_https_request_sends_the_name_as_host_and_tls_server_name(tmp_path: Path) -> None:
    net = Net({"pinned.test": ["127.0.0.1"]})
    with tls_server(tmp_path, "pinned.test") as (port, verify, seen), pinned_https(verify, net) as client:
        resp = client.get(f"https://pinned.test:{port}/")

    assert resp.status_code == 200 and resp.text == "ok"
    assert seen == ["sni=pinned.test", f"host=pinned.test:{port}"]
    assert net.lookups == ["pinned.test"]


def test_a_pinned_https_request_verifies_the_certificate_for_the_name(tmp_path: Path) -> None:
    net = Net({"pinned.test": ["127.0.0.1"]})
    with (
        tls_server(tmp_path, "other.test") as (port, verify, _),
        pinned_https(verify, net) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://pinned.test:{port}/")


# --- the API: 422 naming the field, nothing charged, no connection ------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::127.0.0.1]/x.png", "not_public_address"),
        ("http://[64:ff9b::a9fe:a9fe]/x.png", "not_public_address"),
        ("http://192.0.0.8/x.png", "not_public_address"),
        ("http://mapped.test/x.png", "not_public_address"),  # resolves to ::ffff:127.0.0.1
        ("http://0x7f.0.0.1/x.png", None),  # unusable, not an address refusal
    ],
)
def test_a_submit_with_a_refused_image_url_is_422_charges_nothing_and_connects_nowhere(
    resources: Resources, broker: dramatiq.Broker, url: str, reason: str | None
) -> None:
    net = Net({"mapped.test": ["::ffff:127.0.0.1"]})
    app = create_app(dataclasses.replace(resources, images=net.inspector()))
    user = make_user(resources, credits=500)

    with TestClient(app=app) as api:
        resp = api.post("/v1/jobs", json={"kind": "basic_clean", "input": {"image_url": url}}, headers=auth(user))

    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_input" and error["details"]["field"] == FIELD
    assert error["details"].get("reason") == reason
    assert resources.accounts.balance(user.user_id) == 500
    assert resources.jobs.list_for_user(user.user_id)[0] == []
    assert net.sent == []


# --- vendor outputs: every redirect hop checked -------------------------------------------------------


def vendor_settings(env_settings: Settings) -> Settings:
    return env_settings.with_(fetch_allowlist="", runninghub_base_url="http://runninghub.sim")


def test_a_vendor_output_redirecting_to_a_private_address_is_refused_and_not_retried(env_settings: Settings) -> None:
    net = Net(
        {"cdn.vendor.test": [PUBLIC], "metadata.test": ["169.254.169.254"]},
        lambda request: httpx.Response(302, headers={"Location": "http://metadata.test/latest/meta-data/"}),
    )
    client = download_client(vendor_settings(env_settings), transport=net.transport(), resolver=net.resolve)

    with pytest.raises(FetchError) as refused:
        fetch(client, "https://cdn.vendor.test/out/0.png?Signature=s3cr3t", max_bytes=1 << 20)

    assert refused.value.code == "not_public_address" and not refused.value.retryable
    assert "metadata.test" in str(refused.value) and "s3cr3t" not in str(refused.value)
    assert net.sent == [(PUBLIC, "cdn.vendor.test", "cdn.vendor.test")]


def test_a_vendor_output_redirecting_to_a_public_host_is_fetched_pinned(env_settings: Settings) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "cdn.vendor.test":
            return httpx.Response(302, headers={"Location": "https://storage.vendor.test/0.png"})
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    net = Net({"cdn.vendor.test": [PUBLIC], "storage.vendor.test": ["8.8.4.4", "10.0.0.1"]}, respond)
    client = download_client(vendor_settings(env_settings), transport=net.transport(), resolver=net.resolve)

    fetched = fetch(client, "https://cdn.vendor.test/out/0.png", max_bytes=1 << 20)

    assert fetched.body.read() == PNG
    assert [sent[0] for sent in net.sent] == [PUBLIC, "8.8.4.4"]


def test_outputs_on_a_vendors_own_api_host_stay_allowed(env_settings: Settings) -> None:
    """`genq run`: the simulators serve outputs from their own (loopback) API origin."""
    net = Net({"runninghub.sim": ["127.0.0.1"]})
    client = download_client(vendor_settings(env_settings), transport=net.transport(), resolver=net.resolve)

    assert fetch(client, "http://runninghub.sim/__sim/files/t/0.png", max_bytes=1 << 20).size == len(PNG)
    with pytest.raises(FetchError, match="not_public_address"):
        fetch(client, "http://runninghub.sim:8080/__sim/files/t/0.png", max_bytes=1 << 20)  # another port


def test_the_archiving_pool_fails_a_job_whose_output_redirects_to_metadata_and_refunds(
    api: TestClient[Any], resources: Resources, worker: dramatiq.Worker, rh_sim: RunningHubSim, runtime_: Runtime
) -> None:
    def vendor_files(request: httpx.Request) -> httpx.Response:
        if "/__sim/files/" in request.url.path:
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        return rh_sim.handle(request)

    net = Net({"runninghub.sim": [PUBLIC]}, vendor_files)
    runtime_.downloads = download_client(resources.settings, transport=net.transport(), resolver=net.resolve)
    user = make_user(resources, credits=1)

    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    job = terminal_job(resources, job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 1, what="the refund")

    assert job.status is JobStatus.FAILED and job.error_code == "archive_not_public_address"
    assert job.archive_attempts == 1  # a refused address stays refused: no second attempt
    assert {sent[0] for sent in net.sent} == {PUBLIC}  # nothing ever went to 169.254.169.254


# --- webhooks: checked at the try, and pinned at the post ---------------------------------------------


def test_a_webhook_target_whose_dns_changes_after_the_check_is_not_posted_to(env_settings: Settings) -> None:
    """workers/webhooks.py checks the URL, then posts: the post resolves once, checks, and pins."""
    net = Net({"hooks.test": [PUBLIC, "10.0.0.7"]})
    client = webhook_client(env_settings.with_(fetch_allowlist=""), transport=net.transport(), resolver=net.resolve)
    check_public_url("url", "https://hooks.test/in", Allowlist(), what="webhook targets", resolver=net.resolve)

    with pytest.raises(AddressRefused, match=r"hooks\.test is not a public address; webhook targets"):
        client.post("https://hooks.test/in", content=b"{}")

    assert net.sent == []


def test_a_webhook_post_goes_to_the_checked_address_with_its_name(env_settings: Settings) -> None:
    net = Net({"hooks.test": [PUBLIC]}, lambda request: httpx.Response(204))
    client = webhook_client(env_settings.with_(fetch_allowlist=""), transport=net.transport(), resolver=net.resolve)

    resp = client.post("https://hooks.test/in", content=b"{}")

    assert resp.status_code == 204 and str(resp.request.url) == "https://hooks.test/in"
    assert net.sent == [(PUBLIC, "hooks.test", "hooks.test")]


def test_a_webhook_name_that_does_not_resolve_is_a_connection_failure(env_settings: Settings) -> None:
    net = Net()
    client = webhook_client(env_settings, transport=net.transport(), resolver=net.resolve)

    with pytest.raises(httpx.ConnectError, match="does not resolve"):
        client.post("https://gone.test/in", content=b"{}")
