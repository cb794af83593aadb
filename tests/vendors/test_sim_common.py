"""The shared simulator helpers: Range parsing, interval overlap, knobs, PNGs."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from PIL import Image

from vendors.sim.common import apply_knobs, byte_range, mask_key, max_overlap, png_bytes


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", range(0, 10)),
        ("bytes=90-", range(90, 100)),
        ("bytes=-10", range(90, 100)),
        ("bytes=95-200", range(95, 100)),
        ("bytes=-500", range(0, 100)),
        ("bytes=100-", range(0)),
        ("bytes=-0", range(0)),
        ("bytes=9-0", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_byte_range(header: str | None, expected: range | None) -> None:
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0),
        ([(0, 10), (10, 20)], 1),
        ([(0, 10), (5, 20), (6, 7)], 3),
        ([(0, None), (1, None), (2, 3)], 3),
        ([(0, 1), (2, None), (2, 5)], 2),
    ],
)
def test_max_overlap_counts_half_open_intervals(intervals, expected: int) -> None:
    assert max_overlap(intervals) == expected


@dataclass(frozen=True)
class Knobs:
    latency_ms: float | tuple[float, float] = 0.0
    queued_s: float = 1.0


def test_apply_knobs_turns_json_lists_into_tuples() -> None:
    assert apply_knobs(Knobs(), {"latency_ms": [1, 2]}) == Knobs(latency_ms=(1, 2))


def test_apply_knobs_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown knob"):
        apply_knobs(Knobs(), {"queued": 1})


def test_png_bytes_are_valid_and_differ_per_label() -> None:
    first, second = png_bytes("1/0"), png_bytes("1/1")

    Image.open(io.BytesIO(first)).verify()
    assert first != second


def test_mask_key_shows_at_most_the_last_four() -> None:
    assert (mask_key("rhk-3f9a0c2b7d4e4a1b"), mask_key("short"), mask_key("")) == ("****4a1b", "****", "")
