"""TencentCiClient (GoodsMatting for basic_clean) against TencentCiSim over httpx.MockTransport.

The sim's `fetch` is a test double for the internet (it serves `ci_files`); the client's `inputs` is
what genq's job store would answer. Time moves by the fake clock.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from tests.support import wait_for
from vendors.base import Done, VendorError, VendorExpired, VendorFile, VendorRejected
from vendors.sim.common import asgi_app
from vendors.sim.tencent_ci import TencentCiSim
from vendors.tencent_ci import MattingRequest, TencentCiClient, flatten_on_white
from vendors.tencent_cos import FIELDS, presign_url

SECRET_ID = "AKIDciSim0a1b2c3d4e5f60718293a4b5c6d7e"
SECRET_KEY = "ciSecretKey9f8e7d6c5b4a39281706f5e4d3c2b"
BUCKET_URL = "https://genq-1250000000.cos.ap-guangzhou.myqcloud.com"
IMAGE_URL = "https://inputs.example.com/uploads/u1/shirt.png?v=1&size=64"
GREY = (128, 128, 128)
RED = (255, 0, 0)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def product_photo() -> bytes:
    """A 64x64 grey backdrop with a 24x24 red "product" off-centre at (8, 8)-(32, 32)."""
    image = Image.new("RGB", (64, 64), GREY)
    image.paste(RED, (8, 8, 32, 32))
    return png(image)


def rgba(content: bytes) -> Image.Image:
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG"
        return image.convert("RGBA") if image.mode != "RGBA" else image.copy()


def xml_code(response: httpx.Response) -> str:
    return response.text.split("<Code>")[1].split("</Code>")[0]


@pytest.fixture
def ci_files() -> dict[str, tuple[bytes, str]]:
    """What the sim's `fetch` can download: URL -> (bytes, content type); anything else is unreachable."""
    return {IMAGE_URL: (product_photo(), "image/png")}


@pytest.fixture
def ci_inputs() -> dict[str, str]:
    """Idempotency key -> input image URL, as genq's job store answers the client's `inputs`."""
    return {"job-1": IMAGE_URL}


@pytest.fixture
def ci_sim(clock: Any, ci_files: dict[str, tuple[bytes, str]]) -> TencentCiSim:
    def fetch(url: str) -> tuple[bytes, str]:
        if url not in ci_files:
            raise httpx.ConnectError(f"cannot reach {url}")
        return ci_files[url]

    return TencentCiSim(credentials={SECRET_ID: SECRET_KEY}, fetch=fetch, clock=clock, seed=7)


@pytest.fixture
def ci_http(ci_sim: TencentCiSim) -> Iterator[httpx.Client]:
    """What genq's archiving downloader is: no base URL; here the sim is behind the transport."""
    with httpx.Client(transport=httpx.MockTransport(ci_sim.handle), timeout=5) as client:
        yield client


@pytest.fixture
def ci_client(clock: Any, ci_inputs: dict[str, str]) -> TencentCiClient:
    return TencentCiClient(
        bucket_url=BUCKET_URL, secret_id=SECRET_ID, secret_key=SECRET_KEY, clock=clock, inputs=ci_inputs.get
    )


def output_url(client: TencentCiClient, image_url: str = IMAGE_URL, key: str = "job-1") -> str:
    task_id = client.submit(MattingRequest(image_url), idempotency_key=key)
    (file,) = client.outputs(task_id)
    return file.url


# --- the happy path ---------------------------------------------------------------------------------


def test_submit_poll_fetch_gives_a_centred_cut_out(ci_client, ci_http) -> None:
    """Done at once; the output URL, fetched as archiving would, is the product on transparency."""
    task_id = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")
    outcome = ci_client.poll(task_id)

    assert isinstance(outcome, Done) and len(outcome.files) == 1
    (file,) = outcome.files
    assert (file.content_type, file.ext) == ("image/png", "png")
    response = ci_http.get(file.url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = rgba(response.content)
    assert image.size == (64, 64)
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((63, 63))[3] == 0
    assert image.getpixel((32, 32)) == (*RED, 255)
    assert image.getchannel("A").getbbox() == (20, 20, 44, 44)  # centred by center-layout=1


def test_flatten_on_white_fills_transparency_with_white(ci_client, ci_http) -> None:
    cut = ci_http.get(output_url(ci_client)).content

    flat = Image.open(io.BytesIO(flatten_on_white(cut)))

    assert flat.format == "PNG" and flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (255, 255, 255)
    assert flat.getpixel((10, 50)) == (255, 255, 255)
    assert flat.getpixel((32, 32)) == RED


def test_flatten_on_white_refuses_what_is_not_an_image() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        flatten_on_white(b"<html>nope</html>")


def test_the_output_url_is_the_documented_goodsmatting_call(ci_client) -> None:
    url = httpx.URL(output_url(ci_client))

    assert f"{url.scheme}://{url.host}" == BUCKET_URL
    assert url.path == "/"
    assert url.params["ci-process"] == "GoodsMatting"
    assert url.params["detect-url"] == IMAGE_URL
    assert url.params["center-layout"] == "1"
    assert url.params["q-sign-algorithm"] == "sha1"
    assert url.params["q-ak"] == SECRET_ID
    assert url.params["q-url-param-list"] == "center-layout;ci-process;detect-url"
    assert url.params["q-header-list"] == "host"


def test_submit_is_deterministic_and_calls_nobody(ci_client, ci_sim) -> None:
    first = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")
    again = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")
    other = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-2")

    assert first == again != other
    assert first.startswith("ci_job-1_") and len(first) <= 64
    assert ci_sim.calls == []


def test_cancel_is_a_no_op(ci_client, ci_http) -> None:
    task_id = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")

    ci_client.cancel(task_id)

    assert ci_http.get(ci_client.outputs(task_id)[0].url).status_code == 200


def test_sim_honours_padding_layout(ci_client, ci_http, clock) -> None:
    url = httpx.URL(output_url(ci_client))
    params = {**dict(url.params), "padding-layout": "10x5"}
    resigned = presign(url, params, clock)

    image = rgba(ci_http.get(resigned).content)

    assert image.size == (44, 34)
    assert image.getchannel("A").getbbox() == (10, 5, 34, 29)


def presign(url: httpx.URL, params: dict[str, str], clock: Callable[[], float]) -> str:
    """Re-sign a GoodsMatting URL with other options, as the client's signer would."""
    options = {k: v for k, v in params.items() if k not in FIELDS}
    return presign_url(BUCKET_URL, "/", options, secret_id=SECRET_ID, secret_key=SECRET_KEY, now=clock(), ttl_s=600)


# --- fresh, short-lived signatures ------------------------------------------------------------------


def test_each_outputs_call_signs_afresh(ci_client, ci_http, clock) -> None:
    """Nothing is cached: a later call carries a later window and another signature; both work."""
    task_id = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")
    first = httpx.URL(ci_client.outputs(task_id)[0].url)
    clock.advance(1)
    second = httpx.URL(ci_client.outputs(task_id)[0].url)

    assert first.params["q-signature"] != second.params["q-signature"]
    assert first.params["q-sign-time"] != second.params["q-sign-time"]
    assert ci_http.get(first).status_code == 200
    assert ci_http.get(second).status_code == 200


def test_expired_url_is_access_denied(ci_client, ci_http, clock) -> None:
    url = output_url(ci_client)
    clock.advance(600 + 1)

    response = ci_http.get(url)

    assert response.status_code == 403
    assert xml_code(response) == "AccessDenied"
    assert "expired" in response.text


def test_tampered_signature_does_not_match(ci_client, ci_http) -> None:
    url = httpx.URL(output_url(ci_client))
    tampered = url.copy_set_param("q-signature", "0" * 40)

    response = ci_http.get(tampered)

    assert response.status_code == 403
    assert xml_code(response) == "SignatureDoesNotMatch"


def test_swapped_input_does_not_match(ci_client, ci_http, ci_files) -> None:
    """The detect-url is signed: pointing a valid URL at another image is refused."""
    ci_files["https://inputs.example.com/other.png"] = (product_photo(), "image/png")
    url = httpx.URL(output_url(ci_client)).copy_set_param("detect-url", "https://inputs.example.com/other.png")

    response = ci_http.get(url)

    assert (response.status_code, xml_code(response)) == (403, "SignatureDoesNotMatch")


def test_unknown_secret_id_is_invalid_access_key(ci_http, clock, ci_inputs) -> None:
    stranger = TencentCiClient(
        bucket_url=BUCKET_URL, secret_id="AKIDstranger", secret_key="x" * 32, clock=clock, inputs=ci_inputs.get
    )

    response = ci_http.get(output_url(stranger))

    assert (response.status_code, xml_code(response)) == (403, "InvalidAccessKeyId")


def test_unsigned_request_is_access_denied(ci_http) -> None:
    response = ci_http.get(f"{BUCKET_URL}/", params={"ci-process": "GoodsMatting", "detect-url": IMAGE_URL})

    assert (response.status_code, xml_code(response)) == (403, "AccessDenied")


# --- refusals about the input -----------------------------------------------------------------------


def test_unreachable_input_is_input_unreachable(ci_client, ci_http, ci_inputs) -> None:
    ci_inputs["job-9"] = "https://gone.example.com/x.png"

    response = ci_http.get(output_url(ci_client, "https://gone.example.com/x.png", key="job-9"))

    assert (response.status_code, xml_code(response)) == (404, "NoSuchKey")


def test_default_fetch_reports_an_unreachable_input(clock, ci_inputs) -> None:
    """The sim's own fetch (no test double): a refused connection on loopback is NoSuchKey."""
    detect_url = "http://127.0.0.1:1/closed-port.png"
    sim = TencentCiSim(credentials={SECRET_ID: SECRET_KEY}, clock=clock)
    sim.configure(fetch_timeout_s=2)
    client = TencentCiClient(
        bucket_url=BUCKET_URL, secret_id=SECRET_ID, secret_key=SECRET_KEY, clock=clock, inputs=ci_inputs.get
    )
    ci_inputs["job-9"] = detect_url

    with httpx.Client(transport=httpx.MockTransport(sim.handle)) as http:
        response = http.get(output_url(client, detect_url, key="job-9"))

    assert (response.status_code, xml_code(response)) == (404, "NoSuchKey")


def test_oversize_input_is_too_large(ci_client, ci_http, ci_sim, ci_files) -> None:
    ci_sim.configure(max_image_bytes=1024)
    ci_files[IMAGE_URL] = (b"\x89PNG" + b"\0" * 1024, "image/png")

    response = ci_http.get(output_url(ci_client))

    assert (response.status_code, xml_code(response)) == (400, "InvalidArgument")


def test_default_size_cap_is_32_mb(ci_client, ci_http, ci_files) -> None:
    ci_files[IMAGE_URL] = (b"\0" * (32 * 1024 * 1024 + 1), "image/png")

    response = ci_http.get(output_url(ci_client))

    assert (response.status_code, xml_code(response)) == (400, "InvalidArgument")
    assert "exceeds" in response.text


def test_non_image_input_is_invalid_image_format(ci_client, ci_http, ci_files) -> None:
    ci_files[IMAGE_URL] = (b"<html>not a picture</html>", "text/html")

    response = ci_http.get(output_url(ci_client))

    assert (response.status_code, xml_code(response)) == (400, "InvalidImageFormat")


@pytest.mark.parametrize("bad", ["ftp://in.example.com/a.png", "shirt.png", "https://", "https://a.com/" + "x" * 2048])
def test_submit_rejects_a_bad_image_url(ci_client, bad) -> None:
    with pytest.raises(VendorRejected) as info:
        ci_client.submit(MattingRequest(bad), idempotency_key="job-1")

    assert info.value.code == "invalid_input"


def test_outputs_of_an_unknown_task_is_expired(ci_client) -> None:
    with pytest.raises(VendorExpired) as info:
        ci_client.outputs("ci_job-404_0123456789ab")

    assert info.value.code == "unknown_task"


def test_outputs_refuses_an_input_that_changed_since_submit(ci_client, ci_inputs) -> None:
    task_id = ci_client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")
    ci_inputs["job-1"] = "https://inputs.example.com/another.png"

    with pytest.raises(VendorRejected) as info:
        ci_client.outputs(task_id)

    assert info.value.code == "input_changed"


def test_a_client_without_inputs_refuses_to_submit(clock) -> None:
    client = TencentCiClient(bucket_url=BUCKET_URL, secret_id=SECRET_ID, secret_key=SECRET_KEY, clock=clock)

    with pytest.raises(VendorRejected) as info:
        client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")

    assert info.value.code == "not_configured"


# --- injected failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("slowdown", 503, "SlowDown"), ("http_500", 500, "InternalError")]
)
def test_injected_failures_are_transient(ci_client, ci_http, ci_sim, kind, status, code) -> None:
    """A 5xx: the download is retried (`infra.fetch`), like any server error."""
    ci_sim.configure(failure_rate=1.0, failure_kind=kind)

    response = ci_http.get(output_url(ci_client))

    assert (response.status_code, xml_code(response)) == (status, code)


def test_injected_transport_failure_drops_the_connection(ci_client, ci_http, ci_sim) -> None:
    ci_sim.configure(failure_rate=1.0, failure_kind="transport")

    with pytest.raises(httpx.ConnectError):
        ci_http.get(output_url(ci_client))


# --- admin surface ----------------------------------------------------------------------------------


def test_admin_config_calls_stats_and_reset(ci_client, ci_http, ci_sim) -> None:
    ci_http.get(output_url(ci_client))

    config = ci_http.post(f"{BUCKET_URL}/__sim/config", json={"latency_ms": 0, "failure_kind": "http_500"})
    bad = ci_http.post(f"{BUCKET_URL}/__sim/config", json={"failure_kind": "busy"})
    calls = ci_http.get(f"{BUCKET_URL}/__sim/calls").json()
    stats = ci_http.get(f"{BUCKET_URL}/__sim/stats").json()
    reset = ci_http.post(f"{BUCKET_URL}/__sim/reset")

    assert config.status_code == 200 and config.json()["failure_kind"] == "http_500"
    assert bad.status_code == 400
    assert len(calls) == 1
    assert calls[0]["body"] == {"ci-process": "GoodsMatting", "detect-url": IMAGE_URL, "center-layout": "1"}
    assert calls[0]["api_key"] == "****" + SECRET_ID[-4:]
    assert stats == {"outcomes": {"ok": 1}, "calls": 1}
    assert reset.status_code == 200 and ci_sim.calls == []


# --- secrets ----------------------------------------------------------------------------------------


def test_secret_key_never_leaks(ci_client, ci_http, ci_sim, clock, ci_inputs) -> None:
    """Not in URLs (only its signature is), the call log, stats, reprs or exception text."""
    url = output_url(ci_client)
    ci_http.get(url)
    clock.advance(601)
    ci_http.get(url)
    texts = [url, repr(ci_client), json.dumps(ci_sim.calls_json()), json.dumps(ci_sim.stats())]
    for failing in (
        lambda: ci_client.outputs("ci_job-404_0123456789ab"),
        lambda: ci_client.submit(MattingRequest("ftp://x"), idempotency_key="job-1"),
    ):
        with pytest.raises(VendorError) as info:
            failing()
        texts.append(str(info.value))
    texts.append(ci_http.get(url).text)

    assert all(SECRET_KEY not in text for text in texts)


# --- loopback ---------------------------------------------------------------------------------------


@pytest.fixture
def ci_loopback(ci_sim: TencentCiSim) -> Iterator[str]:
    """`ci_sim` behind uvicorn on a free 127.0.0.1 port, in a thread; stopped at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(ci_sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_presigned_url_works_over_loopback(ci_loopback, clock, ci_inputs) -> None:
    """The unchanged client pointed at the loopback sim: the signature covers Host `127.0.0.1:port`."""
    client = TencentCiClient(
        bucket_url=ci_loopback, secret_id=SECRET_ID, secret_key=SECRET_KEY, clock=clock, inputs=ci_inputs.get
    )
    task_id = client.submit(MattingRequest(IMAGE_URL), idempotency_key="job-1")
    outcome = client.poll(task_id)
    assert isinstance(outcome, Done)
    (file,) = outcome.files

    with httpx.Client(timeout=10) as http:
        response = http.get(file.url)
        tampered = http.get(httpx.URL(file.url).copy_set_param("q-signature", "f" * 40))

    assert file == VendorFile(url=file.url, content_type="image/png", ext="png")
    assert file.url.startswith(f"{ci_loopback}/?ci-process=GoodsMatting&")
    assert response.status_code == 200
    image = rgba(response.content)
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((32, 32)) == (*RED, 255)
    assert (tampered.status_code, xml_code(tampered)) == (403, "SignatureDoesNotMatch")
