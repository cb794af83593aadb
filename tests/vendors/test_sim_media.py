"""The simulators' outputs look and weigh like the vendors': photos of the submitted garment, real
MP4s of the asked size and length, 3D models a glTF reader loads. One test each runs at the
vendors' full size; the rest at `SIM_MEDIA_SCALE`, as the suite does."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import av
import httpx
import pygltflib
import pytest
from PIL import Image

from domain import pose12
from tests.support import SAMPLES, SIM_MEDIA_SCALE
from tests.vendors.conftest import API_KEY, TENCENT_SECRET_ID, TENCENT_SECRET_KEY, WEBAPP_ID, FakeClock
from vendors.base import Done, VendorFile
from vendors.hunyuan3d import Hunyuan3DClient, Hunyuan3DRequest
from vendors.kie import CREATE_PATH, RECORD_PATH, KieClient, VideoRequest
from vendors.runninghub import AppRun, NodeValue, RunningHubClient
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.kie import KieSim, frame_size
from vendors.sim.media import MediaCache
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.samples import GARMENTS
from vendors.sim.tencent_ci import cut_out

KIE_KEY = "kie-media-test-key"
RED_DRESS = GARMENTS["dress"].colour


# --- model_pose12: RunningHub ----------------------------------------------------------------------


def pose12_photos(garment: str, scale: float) -> list[bytes]:
    """The twelve photos of a street/dress run of the pose12 app on `garment` (a sample photo)."""
    clock = FakeClock()
    sim = RunningHubSim(api_keys=[API_KEY], clock=clock)
    sim.configure(media_scale=scale)
    prompt = pose12.build_prompt(pose12.Scene.STREET, pose12.Category.DRESS)
    nodes = (NodeValue("6", "text", prompt), NodeValue("40", "image", f"{SAMPLES}/{garment}.jpg"))
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://rh.sim") as http:
        client = RunningHubClient(http, api_key=API_KEY)
        task_id = client.submit(
            AppRun(webapp_id=WEBAPP_ID, nodes=(*nodes, NodeValue("25", "seed", "1"))), idempotency_key="j"
        )
        clock.advance(sim.knobs.queued_s + sim.knobs.running_s)
        outcome = client.poll(task_id)
        assert isinstance(outcome, Done)
        with ThreadPoolExecutor(4) as pool:  # as archiving fetches them
            return list(pool.map(lambda f: http.get(f.url).raise_for_status().content, outcome.files))


def share_of(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 40) -> float:
    """The fraction of the picture within `tolerance` (per channel) of `colour`."""
    small = image.convert("RGB").reduce(max(1, min(image.size) // 128))
    pixels = small.getcolors(maxcolors=small.width * small.height) or []
    near = sum(n for n, rgb in pixels if max(abs(a - b) for a, b in zip(rgb, colour, strict=True)) <= tolerance)
    return near / (small.width * small.height)


def test_pose12_gives_twelve_portraits_of_the_garment_one_per_pose_at_the_vendors_size() -> None:
    photos = pose12_photos("dress", scale=1.0)

    images = [Image.open(io.BytesIO(photo)) for photo in photos]
    assert len(photos) == 12 and len({hashlib.sha256(p).digest() for p in photos}) == 12
    assert {(image.format, image.size) for image in images} == {("PNG", (1024, 1536))}
    assert min(min(image.size) for image in images) >= 512
    assert {image.text["scene"] for image in images} == {"street"}  # type: ignore[attr-defined]
    assert len({image.text["pose"] for image in images}) == 12  # type: ignore[attr-defined]
    assert all(share_of(image, RED_DRESS, tolerance=60) > 0.02 for image in images)  # the dress itself is in each
    assert sum(map(len, photos)) > 12 * 1024 * 1024  # a vendor's PNGs weigh ~1-3 MB each


def test_a_photo_follows_the_garment_it_was_given() -> None:
    dress, hoodie = pose12_photos("dress", SIM_MEDIA_SCALE)[0], pose12_photos("hoodie", SIM_MEDIA_SCALE)[0]

    photo = Image.open(io.BytesIO(hoodie))
    assert dress != hoodie
    assert share_of(photo, GARMENTS["hoodie"].colour) > share_of(photo, RED_DRESS)
    assert photo.size == (round(1024 * SIM_MEDIA_SCALE), round(1536 * SIM_MEDIA_SCALE))


# --- video: KIE ------------------------------------------------------------------------------------


def test_a_1080p_15s_video_is_an_mp4_of_the_vendors_portrait_frame_and_length() -> None:
    clock = FakeClock()
    sim = KieSim(api_keys=[KIE_KEY], clock=clock)
    body = {
        "model": "sora-2-pro-text-to-video",
        "input": {"prompt": "a red coat in the wind", "n_frames": "15", "size": "high"},
    }
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://kie.sim",
                      headers={"Authorization": f"Bearer {KIE_KEY}"}) as http:  # fmt: skip
        task_id = http.post(CREATE_PATH, json=body).json()["data"]["taskId"]
        clock.advance(sim.knobs.waiting_s + sim.knobs.queuing_s + sim.knobs.generating_s)
        record = http.get(RECORD_PATH, params={"taskId": task_id}).json()["data"]
        [url] = httpx.Response(200, content=record["resultJson"]).json()["resultUrls"]
        content = http.get(url).raise_for_status().content

    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1080, 1920)
        assert container.duration is not None and abs(container.duration / av.time_base - 15) < 0.1
    assert content[4:8] == b"ftyp" and content.index(b"moov") < content.index(b"mdat")  # faststart


@pytest.mark.parametrize(
    ("model", "params", "size"),
    [
        ("sora-2-text-to-video", {}, (720, 1280)),
        ("sora-2-pro-text-to-video", {"size": "standard"}, (720, 1280)),
        ("sora-2-pro-text-to-video", {"size": "high"}, (1080, 1920)),
        ("sora-2-pro-image-to-video", {"size": "high", "aspect_ratio": "landscape"}, (1920, 1080)),
    ],
)
def test_frame_sizes_follow_the_variant_portrait_by_default(
    model: str, params: dict[str, str], size: tuple[int, int]
) -> None:
    assert frame_size(model, params) == size


def test_a_scaled_down_video_is_smaller_and_shorter_and_shows_the_reference_image() -> None:
    clock = FakeClock()
    sim = KieSim(api_keys=[KIE_KEY], clock=clock)
    sim.configure(media_scale=SIM_MEDIA_SCALE)
    request = VideoRequest("sora-2", "720p", 10, "a red coat", image_url=f"{SAMPLES}/coat.jpg")
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://kie.sim") as http:
        client = KieClient(http, api_key=KIE_KEY)
        task_id = client.submit(request, idempotency_key="j")
        clock.advance(sim.knobs.waiting_s + sim.knobs.queuing_s + sim.knobs.generating_s)
        outcome = client.poll(task_id)
        assert isinstance(outcome, Done)
        content = http.get(outcome.files[0].url).content

    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_image() for frame in container.decode(stream)]
    assert (stream.width, stream.height) == (128, 72)  # genq asks for landscape
    assert len(frames) == 24  # 10 s x 0.1 at 24 frames a second
    assert share_of(frames[0], GARMENTS["coat"].colour, tolerance=50) > 0.01
    assert frames[0].tobytes() != frames[6].tobytes()  # it moves


# --- model_3d: Hunyuan 3D --------------------------------------------------------------------------


def model_files(scale: float, names: tuple[str, ...]) -> dict[str, bytes]:
    clock = FakeClock()
    sim = Hunyuan3DSim(credentials={TENCENT_SECRET_ID: TENCENT_SECRET_KEY}, clock=clock)
    sim.configure(media_scale=scale)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://hunyuan3d.sim") as http:
        client = Hunyuan3DClient(http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock)
        job_id = client.submit(Hunyuan3DRequest(version="3.1", prompt="a glazed vase"), idempotency_key="j")
        clock.advance(sim.knobs.queued_s + sim.knobs.running_s)
        outcome = client.poll(job_id)
        assert isinstance(outcome, Done)
        files: dict[str, VendorFile] = {file.ext: file for file in outcome.files}
        return {ext: http.get(files[ext].url).raise_for_status().content for ext in names}


def test_a_3d_result_is_a_glb_a_gltf_reader_loads_with_a_preview() -> None:
    files = model_files(1.0, ("glb", "png"))

    gltf = pygltflib.GLTF2.load_from_bytes(files["glb"])
    blob = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]
    positions, indices = gltf.accessors[primitive.attributes.POSITION], gltf.accessors[primitive.indices]
    assert gltf.asset.version == "2.0" and blob is not None
    assert all(view.byteOffset + view.byteLength <= len(blob) for view in gltf.bufferViews)
    assert positions.count > 10_000 and indices.count % 3 == 0 and indices.count // 3 > 100_000
    assert len(files["glb"]) > 2 * 1024 * 1024  # a vendor's GLB weighs a few MB
    with Image.open(io.BytesIO(files["png"])) as preview:
        assert preview.format == "PNG" and preview.size == (512, 512)


def test_the_obj_zip_holds_the_same_model_as_the_glb() -> None:
    files = model_files(SIM_MEDIA_SCALE, ("glb", "zip"))

    gltf = pygltflib.GLTF2.load_from_bytes(files["glb"])
    primitive = gltf.meshes[0].primitives[0]
    with zipfile.ZipFile(io.BytesIO(files["zip"])) as archive:
        assert archive.testzip() is None and set(archive.namelist()) == {"model.obj", "model.mtl"}
        lines = Counter(line.split(" ", 1)[0] for line in archive.read("model.obj").decode().splitlines())
    assert lines["v"] == gltf.accessors[primitive.attributes.POSITION].count
    assert lines["f"] == gltf.accessors[primitive.indices].count // 3


# --- basic_clean: Tencent CI ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GARMENTS))
def test_a_photo_like_sample_is_a_product_photo_ci_cuts_out(name: str) -> None:
    photo = httpx.get(f"{SAMPLES}/{name}.jpg").raise_for_status()

    cut = Image.open(io.BytesIO(cut_out(photo.content, center=False, padding=None, tolerance=48)))
    alpha = cut.getchannel("A")
    assert photo.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(photo.content)).size == (1024, 1024)
    assert cut.mode == "RGBA" and alpha.getpixel((0, 0)) == 0 and alpha.getpixel((512, 560)) == 255
    assert 0.2 < alpha.histogram()[0] / (1024 * 1024) < 0.9


# --- making each output once -----------------------------------------------------------------------


def test_an_output_is_made_once_however_many_ask_for_it_at_once() -> None:
    cache, made, start = MediaCache(max_bytes=1024), Counter[str](), threading.Barrier(8)

    def build() -> bytes:
        made["clip"] += 1
        return b"x" * 100

    def ask() -> bytes:
        start.wait()
        return cache.get(("kie", 720, 1280), build)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ask(), range(8)))

    assert made["clip"] == 1 and set(answers) == {b"x" * 100}


def test_the_least_recently_used_output_goes_past_the_bound() -> None:
    cache, made = MediaCache(max_bytes=250), Counter[str]()

    def build(name: str) -> bytes:
        made[name] += 1
        return name.encode() * 100

    for name in ("a", "b", "a", "c", "a", "b"):
        cache.get(name, lambda name=name: build(name))  # type: ignore[misc]

    assert made == {"a": 1, "b": 2, "c": 1}


@pytest.mark.parametrize("scale", [0, -0.5, 1.5, True])
def test_media_scale_is_a_fraction_of_the_vendors_size(scale: object) -> None:
    with pytest.raises(ValueError, match="media_scale"):
        RunningHubSim(api_keys=[API_KEY]).configure(media_scale=scale)
