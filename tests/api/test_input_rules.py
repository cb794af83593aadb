"""One test per input rule (SPEC §2): 422 naming the field, nothing charged, no job written."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from infra.images import Allowlist, ImageInspector
from infra.resources import Resources
from tests.support import GARMENT, SAMPLES, SAMPLES_PORT, auth, make_user
from vendors.sim.samples import sized_image

Client = TestClient[Litestar]


def video(**changes: Any) -> dict[str, Any]:
    body = {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a cat surfing"}
    return {"kind": "video", "input": {**body, **changes}}


def model_3d(**changes: Any) -> dict[str, Any]:
    return {"kind": "model_3d", "input": {"version": "3.0", **changes}}


def basic(url: str) -> dict[str, Any]:
    return {"kind": "basic_clean", "input": {"image_url": url}}


def b64(width: int, height: int, *, noise: bool = False) -> str:
    return base64.b64encode(sized_image(width, height, "PNG", noise=noise)).decode()


RULES = [
    ("prompt over 1024 characters", video(prompt="x" * 1025), "input.prompt"),
    ("video without a prompt", video(prompt=" "), "input.prompt"),
    ("image by URL over 8 MB", basic(f"{SAMPLES}/noise/1700x1700.png"), "input.image_url"),
    ("image by base64 over 6 MB", model_3d(image_base64=b64(1450, 1450, noise=True)), "input.image_base64"),
    ("image side under 128 px", basic(f"{SAMPLES}/127x400.png"), "input.image_url"),
    ("image side over 5000 px", basic(f"{SAMPLES}/5001x200.png"), "input.image_url"),
    ("base64 side under 128 px", model_3d(image_base64=b64(100, 300)), "input.image_base64"),
    ("not an image", basic(f"{SAMPLES}/not-an-image.txt"), "input.image_url"),
    ("not base64", model_3d(image_base64="%%%"), "input.image_base64"),
    ("3D with text and image", model_3d(prompt="a chair", image_url=GARMENT), "input.prompt"),
    ("3D with neither", model_3d(), "input.prompt"),
    ("3.1 with low_poly", model_3d(version="3.1", prompt="a chair", low_poly=True), "input.low_poly"),
    (
        "3.0 with a 3.1 view",
        model_3d(image_url=GARMENT, views=[{"view_type": "top", "image_url": GARMENT}]),
        "input.views.0.view_type",
    ),
    (
        "view image too small",
        model_3d(version="3.1", image_url=GARMENT, views=[{"view_type": "top", "image_url": f"{SAMPLES}/64x64.png"}]),
        "input.views.0.image_url",
    ),
    ("sora-2 at 1080p", video(resolution="1080p"), "input.resolution"),
    ("duration not 10 or 15", video(duration=12), "input.duration"),
    ("unknown model", video(model="sora-3"), "input.model"),
    ("not http(s)", basic("file:///etc/passwd"), "input.image_url"),
    ("loopback not allow-listed", basic(f"http://127.0.0.1:{SAMPLES_PORT + 1}/x.png"), "input.image_url"),
    ("private 10.0.0.0/8", basic("http://10.1.2.3/garment.png"), "input.image_url"),
    ("cloud metadata", basic("http://169.254.169.254/latest/meta-data/"), "input.image_url"),
    ("redirect to metadata", basic(f"{SAMPLES}/redirect?to=http://169.254.169.254/x.png"), "input.image_url"),
    ("octal IPv4", basic("http://0177.0.0.1/x.png"), "input.image_url"),
    ("hex-dotted IPv4", basic("http://0x7f.0.0.1/x.png"), "input.image_url"),
    ("NUL in the URL", basic("http://a\x00b.test/x.png"), "input.image_url"),
    ("CR/LF in the URL", basic("http://a.test/x.png\r\nX-Injected: 1"), "input.image_url"),
]


@pytest.mark.parametrize(("rule", "body", "field"), RULES, ids=[r[0] for r in RULES])
def test_rule_is_422_naming_the_field_and_charges_nothing(
    api: Client, resources: Resources, rule: str, body: dict[str, Any], field: str
) -> None:
    user = make_user(resources, credits=500)

    resp = api.post("/v1/jobs", json=body, headers=auth(user))

    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == field
    assert resources.accounts.balance(user.user_id) == 500
    assert resources.jobs.list_for_user(user.user_id)[0] == []


ADDRESS_REFUSALS = [
    ("IPv4-compatible loopback", "http://[::127.0.0.1]/x.png"),
    ("IPv4-compatible, in hex", "http://[::7f00:1]/x.png"),
    ("IPv4-mapped loopback", "http://[::ffff:127.0.0.1]/x.png"),
    ("NAT64 metadata", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"),
    ("6to4 metadata", "http://[2002:a9fe:a9fe::]/latest/meta-data/"),
    ("Teredo to loopback", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x.png"),
    ("192.0.0.8, global to Python", "http://192.0.0.8/x.png"),
    ("192.88.99.0/24, global to Python", "http://192.88.99.1/x.png"),
    ("multicast", "http://224.0.0.1/x.png"),
    ("redirect to NAT64 metadata", f"{SAMPLES}/redirect?to=http://[64:ff9b::a9fe:a9fe]/"),
]


@pytest.mark.parametrize("url", [r[1] for r in ADDRESS_REFUSALS], ids=[r[0] for r in ADDRESS_REFUSALS])
def test_an_address_refusal_is_422_saying_so_not_a_connection_failure(
    api: Client, resources: Resources, url: str
) -> None:
    user = make_user(resources, credits=500)

    resp = api.post("/v1/jobs", json=basic(url), headers=auth(user))

    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["details"] == {"field": "input.image_url", "reason": "not_public_address"}
    assert "is not a public address" in error["message"]
    assert resources.accounts.balance(user.user_id) == 500


@pytest.mark.parametrize(
    "body",
    [
        basic(GARMENT),
        video(model="sora-2-pro", resolution="1080p", duration=15, image_url=f"{SAMPLES}/1280x720.jpg"),
        model_3d(prompt="x" * 1024),
        model_3d(version="3.1", image_base64=b64(512, 512), views=[{"view_type": "top", "image_url": GARMENT}]),
        model_3d(image_url=f"{SAMPLES}/128x5000.webp", low_poly=True),
    ],
    ids=["basic_clean", "video-pro-1080p-image", "3d-text-at-limit", "3.1-base64-with-view", "3.0-low-poly-edges"],
)
def test_inputs_at_the_limits_are_accepted(api: Client, resources: Resources, body: dict[str, Any]) -> None:
    user = make_user(resources, credits=500)

    resp = api.post("/v1/jobs", json=body, headers=auth(user))

    assert resp.status_code == 202, resp.text
    echoed = resp.json()["input"].get("image_base64")
    assert echoed is None or echoed.startswith("<base64, ")  # never echoed back whole


@pytest.mark.parametrize(
    ("allowlist", "url", "allowed"),
    [
        ("", "http://127.0.0.1:9/x.png", False),
        ("127.0.0.1:9", "http://127.0.0.1:9/x.png", True),
        ("127.0.0.1:9", "http://127.0.0.1:10/x.png", False),
        ("10.0.0.0/8", "http://10.20.30.40/x.png", True),
        ("10.0.0.0/8", "http://192.168.1.1/x.png", False),
        ("", "http://169.254.169.254/latest/meta-data/", False),
        ("169.254.169.254/32", "http://169.254.169.254/latest/meta-data/", True),
        ("", "http://[::1]:80/x.png", False),
        ("", "http://100.64.0.1/x.png", False),
        ("", "http://93.184.216.34/x.png", True),
        ("127.0.0.1:9", "http://[::ffff:127.0.0.1]:9/x.png", False),
        ("", "http://[::127.0.0.1]/x.png", False),
        ("", "http://192.88.99.1/x.png", False),
        ("", "http://[64:ff9b::5db8:d822]/x.png", True),  # NAT64 of a public address
    ],
)
def test_fetch_targets_are_public_unless_allow_listed(allowlist: str, url: str, allowed: bool) -> None:
    inspector = ImageInspector(httpx.Client(), Allowlist.parse(allowlist))

    if allowed:
        inspector.check_target("input.image_url", url)
    else:
        with pytest.raises(Exception, match="not a public address"):
            inspector.check_target("input.image_url", url)
