"""Every job kind over HTTP against its simulator, through every pool, into our storage."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import dramatiq
import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image

from domain.jobs import JobStatus
from infra.resources import Resources
from tests.support import GARMENT, SAMPLES, Traffic, auth, make_user, terminal_job, wait_for
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.kie import KieSim
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]

VIDEOS = [
    ("sora-2", "720p", 10, 15),
    ("sora-2", "720p", 15, 20),
    ("sora-2-pro", "720p", 10, 45),
    ("sora-2-pro", "720p", 15, 60),
    ("sora-2-pro", "1080p", 10, 100),
    ("sora-2-pro", "1080p", 15, 130),
]


def submit(api: Client, headers: dict[str, str], kind: str, job_input: dict[str, Any]) -> dict[str, Any]:
    resp = api.post("/v1/jobs", json={"kind": kind, "input": job_input}, headers=headers)
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def downloads(api: Client, headers: dict[str, str], job_id: str) -> list[tuple[str, bytes]]:
    body = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert body["status"] == "succeeded", body
    return [(r["content_type"], httpx.get(r["url"]).raise_for_status().content) for r in body["results"]]


def test_basic_clean_is_a_cut_out_on_white(api: Client, resources: Resources, worker: dramatiq.Worker) -> None:
    user = make_user(resources, credits=1)

    job = submit(api, auth(user), "basic_clean", {"image_url": GARMENT})
    terminal_job(resources, job["id"])

    [(content_type, png)] = downloads(api, auth(user), job["id"])
    image = Image.open(io.BytesIO(png))
    assert content_type == "image/png" and image.mode == "RGB"  # flattened: no alpha left
    assert image.getpixel((2, 2)) == (255, 255, 255)  # the grey backdrop became white
    assert image.getpixel((image.width // 2, image.height // 2)) != (255, 255, 255)  # the product stays
    assert job["price"] == 1 and resources.accounts.balance(user.user_id) == 0


@pytest.mark.parametrize(("model", "resolution", "duration", "price"), VIDEOS)
@pytest.mark.parametrize("with_image", [False, True], ids=["text", "image"])
def test_video_variants_succeed_at_their_price(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    kie_sim: KieSim,
    model: str,
    resolution: str,
    duration: int,
    price: int,
    with_image: bool,
) -> None:
    user = make_user(resources, credits=price)
    job_input: dict[str, Any] = {"model": model, "resolution": resolution, "duration": duration, "prompt": "a fox"}
    if with_image:
        job_input["image_url"] = f"{SAMPLES}/1280x720.jpg"

    job = submit(api, auth(user), "video", job_input)
    terminal_job(resources, job["id"])

    [(content_type, mp4)] = downloads(api, auth(user), job["id"])
    assert content_type == "video/mp4" and mp4[4:8] == b"ftyp" and b"moov" in mp4
    assert job["price"] == price and resources.accounts.balance(user.user_id) == 0
    [create] = [c for c in kie_sim.calls if c.path.endswith("/createTask")]
    assert create.body is not None
    sent = create.body
    assert sent["model"] == f"{model}-{'image' if with_image else 'text'}-to-video"
    assert sent["input"]["n_frames"] == str(duration)


MODEL_3D = [
    {"version": "3.0", "prompt": "a wooden chair"},
    {"version": "3.0", "image_url": GARMENT, "low_poly": True},
    {"version": "3.1", "prompt": "a wooden chair"},
    {"version": "3.1", "image_url": GARMENT, "views": [{"view_type": "top", "image_url": f"{SAMPLES}/256x256.png"}]},
]


@pytest.mark.parametrize("job_input", MODEL_3D, ids=["3.0-text", "3.0-image-lowpoly", "3.1-text", "3.1-image-views"])
def test_model_3d_by_text_and_image_on_both_versions(
    api: Client, resources: Resources, worker: dramatiq.Worker, job_input: dict[str, Any]
) -> None:
    user = make_user(resources, credits=5)

    job = submit(api, auth(user), "model_3d", job_input)
    terminal_job(resources, job["id"])

    files = dict(downloads(api, auth(user), job["id"]))
    assert files["model/gltf-binary"][:4] == b"glTF"
    assert any(name.endswith(".obj") for name in zipfile.ZipFile(io.BytesIO(files["application/zip"])).namelist())
    Image.open(io.BytesIO(files["image/png"])).verify()
    assert job["price"] == 5 and resources.accounts.balance(user.user_id) == 0


def test_hunyuan_limit_three_four_jobs_none_fail(
    api: Client, resources: Resources, worker: dramatiq.Worker, hy_sim: Hunyuan3DSim, runtime_: Runtime
) -> None:
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(hunyuan3d_concurrency=3))
    user = make_user(resources, credits=20, plan="enterprise")

    ids = [submit(api, auth(user), "model_3d", {"version": "3.1", "prompt": f"chair {i}"})["id"] for i in range(4)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert hy_sim.max_concurrent(resources.settings.tencent_secret_id) == 3


def test_hunyuan_own_job_limit_is_back_pressure_not_failure(
    api: Client, resources: Resources, worker: dramatiq.Worker, hy_sim: Hunyuan3DSim, runtime_: Runtime
) -> None:
    hy_sim.configure(pro_concurrency=1)  # the vendor allows fewer than our slots think
    user = make_user(resources, credits=15, plan="enterprise")

    ids = [submit(api, auth(user), "model_3d", {"version": "3.0", "prompt": f"lamp {i}"})["id"] for i in range(3)]
    finished = [terminal_job(resources, job_id, timeout_s=60) for job_id in ids]

    assert {job.status for job in finished} == {JobStatus.SUCCEEDED}
    assert any(("submitting", "queued") in resources.jobs.events(job_id) for job_id in ids)


def test_an_expired_hunyuan_job_fails_with_vendor_job_expired_refunded_once(
    api: Client, resources: Resources, worker: dramatiq.Worker, hy_sim: Hunyuan3DSim
) -> None:
    hy_sim.configure(running_s=3600)
    user = make_user(resources, credits=5)
    job_id = submit(api, auth(user), "model_3d", {"version": "3.0", "prompt": "a vase"})["id"]
    job = wait_for(lambda: (j := resources.jobs.get(job_id)) and j.vendor_task_id and j, what="submission")

    hy_sim.force(job.vendor_task_id, "expire")
    job = terminal_job(resources, job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 5, what="the refund")

    assert job.status is JobStatus.FAILED and job.error_code == "vendor_job_expired"
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)].count("refund") == 1


# --- KIE callbacks: a verified hint that makes us look now --------------------------------------


@pytest.fixture
def slow_polls(runtime_: Runtime) -> None:
    """Polls an hour apart: only a callback can move a video job on within a test."""
    runtime_.policy = Policy.from_settings(runtime_.settings.with_(poll_schedule_video_720p="0:3600"))


def _running_video(api: Client, resources: Resources, kie_sim: KieSim, user_headers: dict[str, str]) -> str:
    job_id = submit(
        api, user_headers, "video", {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "x"}
    )["id"]
    job = wait_for(
        lambda: (j := resources.jobs.get(job_id)) and j.status is JobStatus.PROCESSING and j, what="processing"
    )
    assert job.vendor_task_id is not None
    kie_sim.force(job.vendor_task_id, "complete")
    return job_id


def test_a_signed_callback_moves_the_job_without_waiting_for_a_poll(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    kie_sim: KieSim,
    kie_callbacks: list[tuple[str, dict[str, str], bytes]],
    slow_polls: None,
) -> None:
    user = make_user(resources, credits=15)
    job_id = _running_video(api, resources, kie_sim, auth(user))

    kie_sim.tick()
    [(url, headers, body)] = kie_callbacks
    resp = api.post(httpx.URL(url).path, content=body, headers=headers)
    job = terminal_job(resources, job_id)

    assert resp.status_code == 200
    assert url == resources.settings.kie_callback_url
    assert job.status is JobStatus.SUCCEEDED


def test_a_badly_signed_callback_is_401_and_changes_nothing(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    broker: dramatiq.Broker,
    kie_sim: KieSim,
    kie_callbacks: list[tuple[str, dict[str, str], bytes]],
    slow_polls: None,
) -> None:
    kie_sim.configure(callback_bad_signature_rate=1.0)
    user = make_user(resources, credits=15)
    job_id = _running_video(api, resources, kie_sim, auth(user))

    kie_sim.tick()
    [(url, headers, body)] = kie_callbacks
    traffic = Traffic()
    broker.add_middleware(traffic)
    resp = api.post(httpx.URL(url).path, content=body, headers=headers)

    assert resp.status_code == 401
    assert traffic.of("polling.poll_job") == []  # no poll was sent (the vendor already says "success")
    assert resp.json()["error"]["code"] == "unauthorized"
    job = resources.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PROCESSING


def test_the_same_callback_five_times_is_one_transition(
    api: Client,
    resources: Resources,
    worker: dramatiq.Worker,
    broker: dramatiq.Broker,
    kie_sim: KieSim,
    kie_callbacks: list[tuple[str, dict[str, str], bytes]],
    slow_polls: None,
) -> None:
    user = make_user(resources, credits=15)
    job_id = _running_video(api, resources, kie_sim, auth(user))
    kie_sim.tick()
    [(url, headers, body)] = kie_callbacks
    traffic = Traffic()
    broker.add_middleware(traffic)

    statuses = [api.post(httpx.URL(url).path, content=body, headers=headers).status_code for _ in range(5)]
    terminal_job(resources, job_id)
    wait_for(lambda: traffic.handled("polling.poll_job"), what="the duplicate polls to find nothing to do")

    assert statuses == [200] * 5
    moves = resources.jobs.events(job_id)
    assert moves.count(("processing", "archiving")) == 1 and moves.count(("archiving", "succeeded")) == 1
    assert json.loads(body)["data"]["taskId"] == resources.jobs.get(job_id).vendor_task_id  # type: ignore[union-attr]


# --- deadlines ---------------------------------------------------------------------------------


def test_a_video_past_its_deadline_times_out_refunded_once_and_is_never_polled_again(
    api: Client, resources: Resources, worker: dramatiq.Worker, kie_sim: KieSim
) -> None:
    kie_sim.configure(generating_s=3600)
    user = make_user(resources, credits=15)
    job_id = submit(api, auth(user), "video", {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "x"})[
        "id"
    ]
    wait_for(lambda: (j := resources.jobs.get(job_id)) and j.polls >= 2, what="a few polls")

    with resources.engine.begin() as conn:  # the deadline passes
        from infra.db import jobs

        conn.execute(jobs.update().where(jobs.c.id == job_id).values(deadline_at=jobs.c.created_at))
    job = terminal_job(resources, job_id)
    wait_for(lambda: resources.accounts.balance(user.user_id) == 15, what="the refund")
    finished_at = job.finished_at
    worker.join()

    assert job.status is JobStatus.TIMED_OUT
    assert finished_at is not None
    polls_after = [c for c in kie_sim.calls if c.path.endswith("/recordInfo") and c.at > finished_at.timestamp()]
    assert polls_after == []
    assert [kind for _, kind, _ in resources.accounts.ledger(user.user_id)].count("refund") == 1
