"""Pure input rules (SPEC §2): prompt length, image size and sides, video variants, 3D versions."""

from __future__ import annotations

import pytest

from domain import model3d, video
from domain.errors import InvalidInput
from domain.inputs import ImageFacts, ImageSource, check_image, check_prompt
from domain.jobs import JobKind
from domain.model3d import Version
from domain.routing import route
from domain.video import Resolution, VideoModel

MB = 1024 * 1024


def field_of(call: object) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()  # type: ignore[operator]
    return caught.value.field


def test_prompt_up_to_1024_characters() -> None:
    check_prompt("input.prompt", "x" * 1024)

    assert field_of(lambda: check_prompt("input.prompt", "x" * 1025)) == "input.prompt"
    assert field_of(lambda: check_prompt("input.prompt", "  ", required=True)) == "input.prompt"


@pytest.mark.parametrize(
    ("facts", "source", "ok"),
    [
        (ImageFacts(8 * MB, 1000, 1000, "PNG"), ImageSource.URL, True),
        (ImageFacts(8 * MB + 1, 1000, 1000, "PNG"), ImageSource.URL, False),
        (ImageFacts(6 * MB, 1000, 1000, "JPEG"), ImageSource.BASE64, True),
        (ImageFacts(6 * MB + 1, 1000, 1000, "JPEG"), ImageSource.BASE64, False),
        (ImageFacts(100, 128, 5000, "WEBP"), ImageSource.URL, True),
        (ImageFacts(100, 127, 500, "PNG"), ImageSource.URL, False),
        (ImageFacts(100, 500, 5001, "PNG"), ImageSource.URL, False),
        (ImageFacts(100, 500, 500, "GIF"), ImageSource.URL, False),
    ],
)
def test_image_size_sides_and_format(facts: ImageFacts, source: ImageSource, ok: bool) -> None:
    if ok:
        check_image("input.image_url", facts, source)
    else:
        assert field_of(lambda: check_image("input.image_url", facts, source)) == "input.image_url"


def test_sora_2_has_no_1080p_and_durations_are_10_or_15() -> None:
    video.check_variant(VideoModel.SORA_2_PRO, Resolution.P1080, 15)

    assert field_of(lambda: video.check_variant(VideoModel.SORA_2, Resolution.P1080, 10)) == "input.resolution"
    assert field_of(lambda: video.check_variant(VideoModel.SORA_2, Resolution.P720, 12)) == "input.duration"
    assert len(video.variants()) == 6


@pytest.mark.parametrize(
    ("version", "kwargs", "field"),
    [
        (Version.V3_0, {"has_prompt": True, "has_image": True}, "input.prompt"),
        (Version.V3_0, {"has_prompt": False, "has_image": False}, "input.prompt"),
        (Version.V3_1, {"has_prompt": True, "low_poly": True}, "input.low_poly"),
        (Version.V3_0, {"has_image": True, "views": ["top"]}, "input.views.0.view_type"),
        (Version.V3_1, {"has_image": True, "views": ["left", "left"]}, "input.views.1.view_type"),
        (Version.V3_1, {"has_prompt": True, "views": ["left"]}, "input.views"),
    ],
)
def test_3d_requests_that_break_a_version_rule(version: Version, kwargs: dict[str, object], field: str) -> None:
    args = {"has_prompt": False, "has_image": False, "low_poly": False, "views": [], **kwargs}

    assert field_of(lambda: model3d.check_request(version, **args)) == field  # type: ignore[arg-type]


def test_3d_requests_each_version_accepts() -> None:
    model3d.check_request(Version.V3_0, has_prompt=True, has_image=False, low_poly=True, views=[])
    model3d.check_request(Version.V3_1, has_prompt=False, has_image=True, low_poly=False, views=["top", "left_front"])


def test_routes_name_the_vendor_and_model_slot() -> None:
    assert route(JobKind.VIDEO, {"model": "sora-2-pro"}).slot == "kie:sora-2-pro"
    assert route(JobKind.MODEL_3D, {"version": "3.1"}).slot == "hunyuan3d:pro"
    assert route(JobKind.BASIC_CLEAN, {}).slot == "tencent_ci:goods_matting"


@pytest.mark.parametrize(
    ("decision", "confidence", "policy", "expected"),
    [
        ("pass", 0.99, "reject", "pass"),
        ("reject", 0.95, "pass", "reject"),
        ("review", 0.99, "reject", "reject"),
        ("review", 0.99, "pass", "pass"),
        ("pass", 0.5, "reject", "reject"),
        ("reject", 0.5, "pass", "pass"),
    ],
)
def test_low_confidence_verdicts_follow_the_policy(
    decision: str, confidence: float, policy: str, expected: str
) -> None:
    from domain.moderation import LowConfidence, effective

    assert effective(decision, confidence, threshold=0.8, policy=LowConfidence(policy)) == expected


def test_a_job_waits_for_every_input_and_one_reject_is_enough() -> None:
    from domain.moderation import job_outcome

    assert job_outcome(["pass", None]) is None
    assert job_outcome(["pass", "pass"]) == "pass"
    assert job_outcome([None, "reject"]) == "reject"
    assert job_outcome([]) is None
