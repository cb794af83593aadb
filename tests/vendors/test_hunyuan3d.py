"""Hunyuan3DClient against Hunyuan3DSim over httpx.MockTransport and on loopback; time moves by the
fake clock. Raw calls the client never makes go through the API 3.0 core (`TencentCloudApi`)."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from tests.support import wait_for
from tests.vendors.conftest import TENCENT_SECRET_ID, TENCENT_SECRET_KEY
from vendors.base import (
    Done,
    Failed,
    Running,
    VendorBusy,
    VendorError,
    VendorExpired,
    VendorFile,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
)
from vendors.hunyuan3d import Hunyuan3DClient, Hunyuan3DRequest, ViewImage
from vendors.sim.common import asgi_app, mask_key, png_bytes
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.tencent_cloud import TencentCloudApi

UNKNOWN_JOB = "1234567890123456789"


def image_b64(size: int = 256, label: str = "garment") -> str:
    return base64.b64encode(png_bytes(label, size)).decode()


def finish(sim: Hunyuan3DSim, clock: Any) -> None:
    """Move the fake clock past the queued and running phases."""
    clock.advance(sim.knobs.queued_s + sim.knobs.running_s)


def raw(http: httpx.Client, clock: Any) -> TencentCloudApi:
    """The API 3.0 core signed for ai3d: for fields the client would never send."""
    return TencentCloudApi(
        http, vendor="hunyuan3d", service="ai3d", version="2025-05-13", secret_id=TENCENT_SECRET_ID,
        secret_key=TENCENT_SECRET_KEY, region="ap-guangzhou", clock=clock,
    )  # fmt: skip


def last_submit(sim: Hunyuan3DSim) -> dict[str, Any]:
    return next(dict(c.body) for c in reversed(sim.calls) if c.body.get("Action") == "SubmitHunyuanTo3DProJob")


# --- artifact checks ----------------------------------------------------------------------------------


def assert_glb(content: bytes) -> None:
    magic, version, length = struct.unpack_from("<4sII", content)
    json_length, json_type = struct.unpack_from("<I4s", content, 12)
    document = json.loads(content[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<I4s", content, 20 + json_length)
    assert (magic, version, length) == (b"glTF", 2, len(content))
    assert json_type == b"JSON" and document["asset"]["version"] == "2.0"
    assert bin_type == b"BIN\x00" and bin_length >= document["buffers"][0]["byteLength"] > 0
    assert length == 20 + json_length + 8 + bin_length
    assert document["meshes"][0]["primitives"][0]["attributes"]["POSITION"] == 0


def assert_obj_zip(content: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        obj = archive.read(next(name for name in names if name.endswith(".obj"))).decode()
    assert any(name.endswith(".mtl") for name in names)
    assert obj.count("\nv ") >= 3 and "\nf " in obj


def assert_png(content: bytes) -> None:
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG"
        image.verify()


def download_and_check(http: httpx.Client, files: tuple[VendorFile, ...]) -> None:
    """GLB, then the OBJ zip, then one preview PNG; each downloads and is a valid file of its kind."""
    checks = {"glb": assert_glb, "zip": assert_obj_zip, "png": assert_png}
    assert [(f.ext, f.content_type) for f in files] == [
        ("glb", "model/gltf-binary"), ("zip", "application/zip"), ("png", "image/png"),
    ]  # fmt: skip
    for file in files:
        answer = http.get(file.url)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == file.content_type
        checks[file.ext](answer.content)


# --- the happy paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.0", "3.1"])
@pytest.mark.parametrize(
    "inputs",
    [{"prompt": "a red fox, low detail"}, {"image_base64": image_b64()}, {"image_url": "https://img.example/fox.png"}],
    ids=["text", "image-base64", "image-url"],
)
def test_submit_poll_done_with_glb_obj_zip_and_preview(h3d_sim, clock, h3d_http, h3d_client, version, inputs):
    job_id = h3d_client.submit(Hunyuan3DRequest(version=version, **inputs), idempotency_key="job-1")

    first = h3d_client.poll(job_id)
    clock.advance(h3d_sim.knobs.queued_s)
    second = h3d_client.poll(job_id)
    clock.advance(h3d_sim.knobs.running_s)
    outcome = h3d_client.poll(job_id)

    assert job_id.isdigit() and len(job_id) == 19
    assert (first, second) == (Running(stage="queued"), Running(stage="running"))
    assert isinstance(outcome, Done)
    download_and_check(h3d_http, outcome.files)


def test_fields_reach_the_sim_as_documented(h3d_sim, h3d_client) -> None:
    views = (ViewImage("top", base64=image_b64(label="top")), ViewImage("left_front", url="https://img.example/l.png"))
    request = Hunyuan3DRequest(version="3.1", image_url="https://img.example/fox.png", views=views, result_format="STL")

    job_id = h3d_client.submit(request, idempotency_key="job-1")

    body = last_submit(h3d_sim)
    assert body["Model"] == "3.1" and body["ImageUrl"] == "https://img.example/fox.png"
    assert body["MultiViewImages"][0]["ViewType"] == "top"
    assert body["MultiViewImages"][0]["ViewImageBase64"].startswith("<")  # long base64 shown as its size
    assert body["MultiViewImages"][1] == {"ViewType": "left_front", "ViewImageUrl": "https://img.example/l.png"}
    assert (body["ResultFormat"], "GenerateType" in body, "Prompt" in body) == ("STL", False, False)
    assert h3d_sim.calls[-1].task_id == job_id


def test_low_poly_with_3_0_sends_generate_type(h3d_sim, h3d_client) -> None:
    h3d_client.submit(Hunyuan3DRequest(version="3.0", prompt="a chair", low_poly=True), idempotency_key="job-1")

    assert last_submit(h3d_sim)["GenerateType"] == "LowPoly"


def test_extra_result_format_is_one_more_file(h3d_sim, clock, h3d_http, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair", result_format="STL"), idempotency_key="j")
    finish(h3d_sim, clock)

    files = h3d_client.outputs(job_id)

    assert [(f.ext, f.content_type) for f in files][:3] == [
        ("glb", "model/gltf-binary"), ("zip", "application/zip"), ("stl", "model/stl"),
    ]  # fmt: skip
    stl = h3d_http.get(files[2].url).content
    assert len(stl) == 84 + 50 and struct.unpack_from("<I", stl, 80) == (1,)


def test_query_answers_credits_once_done(h3d_sim, clock, h3d_http) -> None:
    api = raw(h3d_http, clock)
    job_id = str(api.call("SubmitHunyuanTo3DProJob", {"Prompt": "a chair", "EnablePBR": True})["JobId"])
    waiting = api.call("QueryHunyuanTo3DProJob", {"JobId": job_id})
    finish(h3d_sim, clock)

    done = api.call("QueryHunyuanTo3DProJob", {"JobId": job_id})

    assert waiting == {"Status": "WAIT", "ErrorCode": "", "ErrorMessage": "", "ResultFile3Ds": [],
                       "ResultCreditDetails": "", "ResultCreditConsumed": 0.0}  # fmt: skip
    assert done["ResultCreditConsumed"] == 30.0
    assert "q-sign-algorithm=sha1" in done["ResultFile3Ds"][0]["Url"]


# --- what 3.0 and 3.1 accept ----------------------------------------------------------------------------


def test_3_1_with_its_extra_views_is_accepted(h3d_sim, clock, h3d_client) -> None:
    views = tuple(ViewImage(v, base64=image_b64(label=v)) for v in ("top", "bottom", "left_front", "back"))
    request = Hunyuan3DRequest("3.1", image_base64=image_b64(), views=views)

    job_id = h3d_client.submit(request, idempotency_key="job-1")
    finish(h3d_sim, clock)

    assert isinstance(h3d_client.poll(job_id), Done)


def test_3_0_with_a_3_1_only_view_is_rejected_by_the_sim(h3d_sim, h3d_client) -> None:
    request = Hunyuan3DRequest("3.0", image_base64=image_b64(), views=(ViewImage("top", base64=image_b64()),))

    with pytest.raises(VendorRejected) as info:
        h3d_client.submit(request, idempotency_key="job-1")

    assert info.value.code == "tencent_InvalidParameterValue"
    assert "MultiViewImages.0.ViewType" in info.value.detail


def test_3_1_with_low_poly_is_rejected_locally(h3d_sim, h3d_client) -> None:
    with pytest.raises(VendorRejected) as info:
        h3d_client.submit(Hunyuan3DRequest("3.1", prompt="a chair", low_poly=True), idempotency_key="job-1")

    assert info.value.code == "invalid_request"
    assert h3d_sim.calls == []


@pytest.mark.parametrize(
    "inputs",
    [{}, {"prompt": "a chair", "image_url": "https://img.example/c.png"},
     {"image_url": "https://img.example/c.png", "image_base64": "aGk="}, {"prompt": ""}],
    ids=["neither", "prompt-and-image", "two-images", "empty-prompt"],
)  # fmt: skip
def test_exactly_one_input_is_checked_locally(h3d_sim, h3d_client, inputs) -> None:
    with pytest.raises(VendorRejected) as info:
        h3d_client.submit(Hunyuan3DRequest("3.0", **inputs), idempotency_key="job-1")

    assert info.value.code == "invalid_request"
    assert h3d_sim.calls == []


def test_submit_takes_only_its_own_request_type(h3d_client) -> None:
    with pytest.raises(TypeError):
        h3d_client.submit({"prompt": "a chair"}, idempotency_key="job-1")


# --- the simulator's field rules (VENDORS.md §2.2), through raw calls -----------------------------------

VIEW = {"ViewType": "left", "ViewImageBase64": image_b64(label="left")}

FIELD_RULES = [
    ({"Model": "3.1", "Prompt": "x", "GenerateType": "LowPoly"}, "InvalidParameterValue", "GenerateType"),
    ({"Model": "3.2", "Prompt": "x"}, "InvalidParameterValue", "Model"),
    ({"Prompt": "x" * 1025}, "InvalidParameterValue", "Prompt"),
    ({"Prompt": "x", "ImageUrl": "https://img.example/c.png"}, "InvalidParameter", "Prompt"),
    ({}, "InvalidParameter", "Prompt"),
    ({"ImageUrl": "https://a.example/1.png", "ImageBase64": image_b64()}, "InvalidParameter", "ImageBase64"),
    ({"ImageBase64": image_b64(size=64)}, "InvalidParameterValue", "ImageBase64"),
    ({"ImageBase64": "%%% not base64"}, "InvalidParameterValue", "ImageBase64"),
    ({"ImageBase64": base64.b64encode(b"GIF89a....").decode()}, "InvalidParameterValue", "ImageBase64"),
    ({"ImageUrl": "ftp://img.example/c.png"}, "InvalidParameterValue", "ImageUrl"),
    ({"ImageUrl": "https://"}, "InvalidParameterValue", "ImageUrl"),
    ({"Prompt": "x", "FaceCount": 100}, "InvalidParameterValue", "FaceCount"),
    ({"Prompt": "x", "FaceCount": "many"}, "InvalidParameter", "FaceCount"),
    ({"Prompt": "x", "PolygonType": "triangle"}, "InvalidParameterValue", "PolygonType"),
    ({"Prompt": "x", "ResultFormat": "OBJ"}, "InvalidParameterValue", "ResultFormat"),
    ({"Prompt": "x", "GenerateType": "Voxel"}, "InvalidParameterValue", "GenerateType"),
    ({"Prompt": "x", "Colour": "red"}, "UnknownParameter", "Colour"),
    ({"ImageUrl": "https://a.example/1.png", "MultiViewImages": [VIEW, VIEW]}, "InvalidParameterValue",
     "MultiViewImages.1.ViewType"),
    ({"ImageUrl": "https://a.example/1.png", "MultiViewImages": [{"ViewType": "left"}]}, "InvalidParameter",
     "MultiViewImages.0"),
    ({"ImageUrl": "https://a.example/1.png",
      "MultiViewImages": [{"ViewType": "left", "ViewImageBase64": image_b64(size=128)}]},
     "InvalidParameterValue", "MultiViewImages.0.ViewImageBase64"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "code", "field"), FIELD_RULES)
def test_submit_field_rules_name_the_field(clock, h3d_http, params, code, field) -> None:
    with pytest.raises(VendorRejected) as info:
        raw(h3d_http, clock).call("SubmitHunyuanTo3DProJob", params)

    assert info.value.code == f"tencent_{code}"
    assert f"`{field}`" in info.value.detail


@pytest.mark.parametrize(
    "params",
    [
        {"Prompt": "x" * 1024, "FaceCount": 3000, "EnablePBR": True},
        {"GenerateType": "Sketch", "Prompt": "a cup", "ImageBase64": image_b64(size=128)},
        {"GenerateType": "LowPoly", "Prompt": "a cup", "PolygonType": "quadrilateral"},
        {"GenerateType": "Geometry", "ImageUrl": "https://img.example/c.png", "ResultFormat": "USDZ"},
    ],
    ids=["longest-prompt", "sketch-both", "low-poly-quads", "geometry"],
)
def test_valid_submissions_are_accepted(clock, h3d_http, params) -> None:
    assert str(raw(h3d_http, clock).call("SubmitHunyuanTo3DProJob", params)["JobId"]).isdigit()


def test_geometry_outputs_glb_plus_requested_usdz(h3d_sim, clock, h3d_http, h3d_client) -> None:
    params = {"GenerateType": "Geometry", "ImageUrl": "https://img.example/c.png", "ResultFormat": "USDZ"}
    job_id = str(raw(h3d_http, clock).call("SubmitHunyuanTo3DProJob", params)["JobId"])
    finish(h3d_sim, clock)

    files = h3d_client.outputs(job_id)

    assert [f.ext for f in files] == ["glb", "usdz", "png"]
    usdz = h3d_http.get(files[1].url).content
    with zipfile.ZipFile(io.BytesIO(usdz)) as archive:
        info = archive.infolist()[0]
    assert info.filename.endswith(".usda") and info.compress_type == zipfile.ZIP_STORED
    assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0


# --- limits and back-pressure ----------------------------------------------------------------------------


def test_fourth_running_job_is_busy_and_a_finished_one_frees_a_slot(h3d_sim, h3d_client) -> None:
    """Pro limit 3: the 4th submit is VendorBusy (never Failed); after one finishes it is accepted."""
    request = Hunyuan3DRequest("3.0", prompt="a chair")
    first, *_ = [h3d_client.submit(request, idempotency_key=f"job-{n}") for n in range(3)]

    with pytest.raises(VendorBusy) as info:
        h3d_client.submit(request, idempotency_key="job-4")
    h3d_sim.force(first, "complete")
    h3d_client.submit(request, idempotency_key="job-4")

    assert info.value.code == "tencent_RequestLimitExceeded.JobNumExceed"
    assert h3d_sim.max_concurrent(TENCENT_SECRET_ID) == 3
    assert h3d_sim.running(TENCENT_SECRET_ID) == 3


def test_max_concurrent_is_exact_without_polling(h3d_sim, clock, h3d_client) -> None:
    """Nobody polls, yet a job that ended before the next began does not count as overlapping."""
    request = Hunyuan3DRequest("3.0", prompt="a chair")
    h3d_client.submit(request, idempotency_key="job-1")
    finish(h3d_sim, clock)
    h3d_client.submit(request, idempotency_key="job-2")
    h3d_client.submit(request, idempotency_key="job-3")
    clock.advance(10_000)

    assert h3d_sim.max_concurrent(TENCENT_SECRET_ID) == 2
    assert h3d_sim.running(TENCENT_SECRET_ID) == 0


def test_concurrency_limit_is_a_knob(h3d_sim, h3d_client) -> None:
    h3d_sim.configure(pro_concurrency=1)
    h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    with pytest.raises(VendorBusy):
        h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-2")


def test_rapid_jobs_have_their_own_limit_of_one(h3d_sim, clock, h3d_http) -> None:
    api = raw(h3d_http, clock)
    job_id = str(api.call("SubmitHunyuanTo3DRapidJob", {"Prompt": "a cup", "ResultFormat": "GLB"})["JobId"])

    with pytest.raises(VendorBusy):
        api.call("SubmitHunyuanTo3DRapidJob", {"Prompt": "a cup"})
    api.call("SubmitHunyuanTo3DProJob", {"Prompt": "a cup"})
    finish(h3d_sim, clock)
    done = api.call("QueryHunyuanTo3DRapidJob", {"JobId": job_id})

    assert done["Status"] == "DONE"
    assert [f["Type"] for f in done["ResultFile3Ds"]] == ["GLB"]


# --- failed, expired and forced jobs ----------------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "knobs"), [("sim-fail please", {}), ("a chair", {"job_fail_rate": 1.0})])
def test_failed_job_is_a_failed_outcome_with_the_vendor_code(h3d_sim, clock, h3d_client, prompt, knobs) -> None:
    h3d_sim.configure(**knobs)
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt=prompt), idempotency_key="job-1")
    finish(h3d_sim, clock)

    outcome = h3d_client.poll(job_id)

    assert outcome == Failed("tencent_FailedOperation.InnerError", "simulated generation failure")


def test_failed_job_outputs_are_rejected_with_its_code(h3d_sim, clock, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="sim-fail"), idempotency_key="job-1")
    finish(h3d_sim, clock)

    with pytest.raises(VendorRejected) as info:
        h3d_client.outputs(job_id)

    assert info.value.code == "tencent_FailedOperation.InnerError"


def test_job_past_its_expiry_is_expired(h3d_sim, clock, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")
    finish(h3d_sim, clock)
    assert isinstance(h3d_client.poll(job_id), Done)

    clock.advance(24 * 3600)

    with pytest.raises(VendorExpired) as info:
        h3d_client.poll(job_id)
    assert info.value.code == "tencent_ResourceNotFound"


def test_configured_expiry_answer_needs_the_client_told(h3d_sim, h3d_http, clock) -> None:
    h3d_sim.configure(expired_code="InvalidParameterValue.JobIdNotExist")
    told = Hunyuan3DClient(
        h3d_http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock,
        expired_codes=("InvalidParameterValue.JobIdNotExist",),
    )  # fmt: skip

    with pytest.raises(VendorExpired) as info:
        told.poll(UNKNOWN_JOB)

    assert info.value.code == "tencent_InvalidParameterValue.JobIdNotExist"


def test_unknown_job_is_expired(h3d_client) -> None:
    with pytest.raises(VendorExpired):
        h3d_client.poll(UNKNOWN_JOB)


@pytest.mark.parametrize(("kind", "expected"), [("complete", Done), ("fail", Failed)])
def test_forced_transition_through_http(h3d_http, h3d_client, kind, expected) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    answer = h3d_http.post(f"/__sim/jobs/{job_id}/{kind}")

    assert answer.status_code == 200
    assert isinstance(h3d_client.poll(job_id), expected)


def test_forced_expiry_through_http_frees_the_slot(h3d_sim, h3d_http, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    h3d_http.post(f"/__sim/jobs/{job_id}/expire")

    with pytest.raises(VendorExpired):
        h3d_client.poll(job_id)
    assert h3d_sim.running(TENCENT_SECRET_ID) == 0


def test_forcing_an_unknown_job_is_404(h3d_http) -> None:
    assert h3d_http.post(f"/__sim/jobs/{UNKNOWN_JOB}/complete").status_code == 404


def test_cancel_is_a_no_op_and_the_job_runs_on(h3d_sim, clock, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    h3d_client.cancel(job_id)
    finish(h3d_sim, clock)

    assert isinstance(h3d_client.poll(job_id), Done)
    assert [c.body["Action"] for c in h3d_sim.calls if "Action" in c.body] == [
        "SubmitHunyuanTo3DProJob",
        "QueryHunyuanTo3DProJob",
    ]


def test_outputs_of_an_unfinished_job_is_rejected_not_finished(h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    with pytest.raises(VendorRejected) as info:
        h3d_client.outputs(job_id)

    assert (info.value.code, info.value.detail) == ("not_finished", "queued")


# --- result links --------------------------------------------------------------------------------------


def test_result_links_are_cos_presigned_and_expire(h3d_sim, clock, h3d_http, h3d_client) -> None:
    h3d_sim.configure(result_url_ttl_s=600)
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")
    finish(h3d_sim, clock)
    glb = h3d_client.outputs(job_id)[0]

    fresh = h3d_http.get(glb.url)
    forged = h3d_http.get(glb.url.replace("model.glb", "preview.png"))
    clock.advance(601)
    stale = h3d_http.get(glb.url)

    url = httpx.URL(glb.url)
    assert url.path == f"/__sim/files/{job_id}/model.glb"
    assert {"q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-signature"} <= set(url.params)
    assert (fresh.status_code, forged.status_code, stale.status_code) == (200, 403, 403)
    assert "<Code>AccessDenied</Code>" in stale.text


def test_files_honour_range(h3d_sim, clock, h3d_http, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")
    finish(h3d_sim, clock)
    glb = h3d_client.outputs(job_id)[0]

    part = h3d_http.get(glb.url, headers={"Range": "bytes=0-3"})

    assert (part.status_code, part.content) == (206, b"glTF")


def test_files_of_unfinished_jobs_are_not_there(h3d_http, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    assert h3d_http.get(f"/__sim/files/{job_id}/model.glb").status_code == 404


# --- classification through the simulator -------------------------------------------------------------


def submit_chair(client: Hunyuan3DClient) -> object:
    return client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")


SIM_CLASSIFICATION = [
    pytest.param({"failure_rate": 1.0, "failure_kind": "InternalError"}, submit_chair, VendorUnavailable,
                 "tencent_InternalError", id="InternalError"),
    pytest.param({"failure_rate": {"SubmitHunyuanTo3DProJob": 1.0}, "failure_kind": "RequestLimitExceeded"},
                 submit_chair, VendorBusy, "tencent_RequestLimitExceeded", id="qps"),
    pytest.param({"failure_rate": 1.0, "failure_kind": "transport"}, submit_chair, VendorUnavailable, "transport",
                 id="transport"),
    pytest.param({"pro_concurrency": 0}, submit_chair, VendorBusy, "tencent_RequestLimitExceeded.JobNumExceed",
                 id="JobNumExceed"),
    pytest.param({"clock_offset_s": 400}, submit_chair, VendorUnavailable, "tencent_AuthFailure.SignatureExpire",
                 id="SignatureExpire"),
    pytest.param({}, lambda c: c.submit(Hunyuan3DRequest("3.0", prompt="sim-reject"), idempotency_key="j"),
                 VendorRejected, "tencent_OperationDenied.TextIllegalDetected", id="moderation"),
    pytest.param({}, lambda c: c.poll(UNKNOWN_JOB), VendorExpired, "tencent_ResourceNotFound", id="expired"),
]  # fmt: skip


@pytest.mark.parametrize(("knobs", "act", "bucket", "code"), SIM_CLASSIFICATION)
def test_classification_through_the_sim(h3d_sim, h3d_client, knobs, act, bucket, code) -> None:
    h3d_sim.configure(**knobs)

    with pytest.raises(VendorError) as info:
        act(h3d_client)

    assert type(info.value) is bucket
    assert info.value.code == code


def done_with(files: object) -> Callable[[httpx.Request], httpx.Response]:
    body = {"Response": {"Status": "DONE", "ErrorCode": "", "ErrorMessage": "", "ResultFile3Ds": files,
                         "RequestId": "r"}}  # fmt: skip
    return lambda _request: httpx.Response(200, json=body)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (done_with([]), "no_outputs"),
        (done_with([{"Type": "GLB"}]), "missing_Url"),
        (lambda _r: httpx.Response(200, json={"Response": {"Status": "PAUSED", "RequestId": "r"}}), "unknown_status"),
        (lambda _r: httpx.Response(200, json={"Response": {"RequestId": "r"}}), "missing_JobId"),
    ],
    ids=["no-files", "no-url", "unknown-status", "no-job-id"],
)
def test_contract_drift_is_a_protocol_error(clock, answer, code) -> None:
    with httpx.Client(transport=httpx.MockTransport(answer), base_url="https://ai3d.tencentcloudapi.com") as http:
        client = Hunyuan3DClient(http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock)
        with pytest.raises(VendorProtocolError) as info:
            submit_chair(client) if code == "missing_JobId" else client.poll(UNKNOWN_JOB)

    assert info.value.code == code


def test_file_types_map_to_extensions_and_previews_are_deduplicated(clock) -> None:
    cos = "https://x-1250000000.cos.ap-guangzhou.tencentcos.cn/3d"
    answer = done_with([
        {"Type": "OBJ", "Url": f"{cos}/a.zip?q-sign-algorithm=sha1", "PreviewImageUrl": f"{cos}/p.png?x=1"},
        {"Type": "GLB", "Url": f"{cos}/a.glb", "PreviewImageUrl": f"{cos}/p.png?x=1"},
        {"Type": "FBX", "Url": f"{cos}/download?id=3", "PreviewImageUrl": ""},
        {"Type": "MP4", "Url": f"{cos}/turntable.mp4", "PreviewImageUrl": f"{cos}/q.jpg"},
    ])  # fmt: skip
    with httpx.Client(transport=httpx.MockTransport(answer), base_url="https://ai3d.tencentcloudapi.com") as http:
        client = Hunyuan3DClient(http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock)
        outcome = client.poll(UNKNOWN_JOB)

    assert isinstance(outcome, Done)
    assert [(f.ext, f.content_type) for f in outcome.files] == [
        ("zip", "application/zip"), ("glb", "model/gltf-binary"), ("fbx", "application/octet-stream"),
        ("mp4", "video/mp4"), ("png", "image/png"), ("jpg", "image/jpeg"),
    ]  # fmt: skip


# --- admin surface --------------------------------------------------------------------------------------


def test_stats_report_max_concurrent_by_masked_secret_id(h3d_http, h3d_client) -> None:
    h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")
    h3d_client.submit(Hunyuan3DRequest("3.1", prompt="a table"), idempotency_key="job-2")

    stats = h3d_http.get("/__sim/stats").json()

    masked = mask_key(TENCENT_SECRET_ID)
    assert stats == {"max_concurrent": {masked: 2}, "running": {masked: 2}, "jobs": 2}


def test_config_over_http_changes_both_layers_and_rejects_bad_values(h3d_sim, h3d_http) -> None:
    changed = h3d_http.post("/__sim/config", json={"queued_s": 1, "latency_ms": [0, 0], "clock_offset_s": -5})
    bad = h3d_http.post("/__sim/config", json={"queued_s": -1, "clock_offset_s": 7})
    unknown = h3d_http.post("/__sim/config", json={"nope": 1})

    assert changed.status_code == 200 and changed.json()["queued_s"] == 1
    assert (h3d_sim.knobs.queued_s, h3d_sim.core.knobs.latency_ms, h3d_sim.core.knobs.clock_offset_s) == (1, (0, 0), -5)
    assert (bad.status_code, unknown.status_code) == (400, 400)
    assert h3d_http.get("/__sim/config").json()["clock_offset_s"] == -5


def test_reset_forgets_jobs_and_calls(h3d_sim, h3d_http, h3d_client) -> None:
    job_id = h3d_client.submit(Hunyuan3DRequest("3.0", prompt="a chair"), idempotency_key="job-1")

    h3d_http.post("/__sim/reset")

    assert h3d_http.get("/__sim/calls").json() == []
    with pytest.raises(VendorExpired):
        h3d_client.poll(job_id)


# --- secrets --------------------------------------------------------------------------------------------


def test_secret_key_never_in_call_log_or_exception_text(h3d_sim, h3d_http, h3d_client, clock) -> None:
    failures: list[VendorError] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except VendorError as exc:
            failures.append(exc)

    for kind in ("transport", "InternalError", "RequestLimitExceeded"):
        h3d_sim.configure(failure_rate=1.0, failure_kind=kind)
        collect(lambda: submit_chair(h3d_client))
    h3d_sim.configure(failure_rate=0.0)
    collect(lambda: h3d_client.poll(UNKNOWN_JOB))
    collect(lambda: h3d_client.submit(Hunyuan3DRequest("3.0", prompt="x" * 2000), idempotency_key="job-2"))
    collect(lambda: h3d_client.submit(Hunyuan3DRequest("3.1", prompt="x", low_poly=True), idempotency_key="j"))
    wrong = Hunyuan3DClient(h3d_http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY[::-1], clock=clock)
    collect(lambda: submit_chair(wrong))

    assert len(failures) == 7
    for exc in failures:
        assert TENCENT_SECRET_KEY not in f"{exc} {exc!r} {exc.detail} {exc.args}"
    assert TENCENT_SECRET_KEY not in h3d_http.get("/__sim/calls").text
    assert TENCENT_SECRET_KEY not in repr(h3d_sim.calls) + repr(h3d_client) + repr(wrong)


# --- loopback -------------------------------------------------------------------------------------------


@pytest.fixture
def h3d_loopback(h3d_sim: Hunyuan3DSim) -> Iterator[str]:
    """`h3d_sim` behind uvicorn on a free 127.0.0.1 port, in a thread; stopped at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app(h3d_sim.handle), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout_s=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_client_submits_polls_and_downloads_over_loopback(h3d_sim, clock, h3d_loopback) -> None:
    """The TC3 signature covers the real `Host: 127.0.0.1:<port>`; result links point back at it."""
    seen_hosts: list[str] = []

    def note_host(request: httpx.Request) -> None:
        seen_hosts.append(request.headers["host"])

    with httpx.Client(base_url=h3d_loopback, timeout=10, event_hooks={"request": [note_host]}) as http:
        client = Hunyuan3DClient(http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock)
        job_id = client.submit(Hunyuan3DRequest("3.1", prompt="a red fox"), idempotency_key="job-1")
        first = client.poll(job_id)
        finish(h3d_sim, clock)
        outcome = client.poll(job_id)
        assert isinstance(outcome, Done)
        glb = http.get(outcome.files[0].url)

    assert first == Running(stage="queued")
    assert seen_hosts[0] == h3d_loopback.removeprefix("http://")
    assert outcome.files[0].url.startswith(f"{h3d_loopback}/__sim/files/{job_id}/model.glb?q-sign-algorithm=sha1")
    assert_glb(glb.content)


def test_injected_transport_failure_is_a_502_over_loopback(h3d_sim, clock, h3d_loopback) -> None:
    h3d_sim.configure(failure_rate=1.0, failure_kind="transport")

    with httpx.Client(base_url=h3d_loopback, timeout=10) as http, pytest.raises(VendorUnavailable) as info:
        submit_chair(Hunyuan3DClient(http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock))

    assert info.value.code == "http_502"


# --- the Rapid pair ----------------------------------------------------------------------------------


def test_a_rapid_job_is_submitted_and_polled_through_the_rapid_actions(h3d_sim, clock, h3d_http, h3d_client):
    job_id = h3d_client.submit(Hunyuan3DRequest(version="3.0", prompt="a teapot", rapid=True), idempotency_key="j")

    first = h3d_client.poll(job_id)
    clock.advance(h3d_sim.knobs.queued_s + h3d_sim.knobs.running_s)
    outcome = h3d_client.poll(job_id)

    assert job_id.startswith("rapid:") and job_id.removeprefix("rapid:").isdigit()
    assert isinstance(first, Running)
    assert isinstance(outcome, Done)
    assert [(f.ext, f.content_type) for f in outcome.files] == [("zip", "application/zip"), ("png", "image/png")]
    assert_obj_zip(h3d_http.get(outcome.files[0].url).content)  # Rapid's default: OBJ, plus a preview
    assert_png(h3d_http.get(outcome.files[1].url).content)
    assert [c.body["Action"] for c in h3d_sim.calls if "Action" in c.body] == [
        "SubmitHunyuanTo3DRapidJob",
        "QueryHunyuanTo3DRapidJob",
        "QueryHunyuanTo3DRapidJob",
    ]
    assert "Model" not in h3d_sim.calls[0].body


@pytest.mark.parametrize(
    "request_",
    [
        Hunyuan3DRequest(version="3.0", prompt="x" * 201, rapid=True),
        Hunyuan3DRequest(version="3.0", prompt="a chair", low_poly=True, rapid=True),
        Hunyuan3DRequest(
            version="3.0", image_url="https://img.example/a.png", views=(ViewImage("left", url="u"),), rapid=True
        ),
    ],
    ids=["long-prompt", "low-poly", "views"],
)
def test_rapid_rules_are_checked_locally(h3d_sim, h3d_client, request_) -> None:
    with pytest.raises(VendorRejected) as caught:
        h3d_client.submit(request_, idempotency_key="j")

    assert caught.value.code == "invalid_request"
    assert h3d_sim.calls == []
