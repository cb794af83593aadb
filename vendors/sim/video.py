"""Sora clips, simulated: real H.264 MP4s of the asked frame size and length (PyAV's own FFmpeg).

The picture moves: a ball bounces across a meadow, the reference image (if any) breathes in the
sky, and a bar fills as the clip plays; the prompt is written above the bar. One second of
distinct frames is drawn and then played again (its motion is periodic, so the loop does not
show), with the progress bar written into each frame; what does not move costs the encoder next
to nothing, so a 1080x1920 15 s clip takes a few seconds. `moov` comes first (`+faststart`), as a CDN
serves it.
"""

from __future__ import annotations

import math
import tempfile
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Final

import av
from PIL import Image, ImageDraw

from vendors.sim.media import font

FPS: Final = 24
_BAR_LUMA: Final = (b"\xeb", b"\x30")  # filled, empty (video-range Y)


def mp4(width: int, height: int, seconds: float, prompt: str, image: Image.Image | None = None) -> bytes:
    """An MP4 of `width` x `height` (even numbers) lasting `seconds`, at `FPS` frames a second."""
    count = max(1, round(seconds * FPS))
    loop = [_yuv(_frame(width, height, i / FPS, prompt, image)) for i in range(min(FPS, count))]
    with tempfile.TemporaryDirectory(prefix="genq-sim-") as folder:
        path = Path(folder) / "clip.mp4"
        with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "26"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for index in range(count):
                frame = loop[index % len(loop)]
                _progress(frame, (index + 1) / count)
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return path.read_bytes()


def _yuv(picture: Image.Image) -> av.VideoFrame:
    frame: av.VideoFrame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
    return frame.reformat(format="yuv420p")


def _progress(frame: av.VideoFrame, done: float) -> None:
    """A bar along the bottom, `done` of it filled: written straight into the luma plane."""
    plane = frame.planes[0]
    pixels, stride = memoryview(plane), plane.line_size
    width, height = frame.width, frame.height
    thickness, filled = max(2, height // 160), round(width * done)
    for row in range(height - 3 * thickness, height - 2 * thickness):
        start = row * stride
        pixels[start : start + filled] = _BAR_LUMA[0] * filled
        pixels[start + filled : start + width] = _BAR_LUMA[1] * (width - filled)


def _frame(width: int, height: int, t: float, prompt: str, image: Image.Image | None) -> Image.Image:
    """The picture at `t` seconds; every motion repeats each second."""
    phase = t % 1.0
    frame = _scenery(width, height).copy()
    draw = ImageDraw.Draw(frame)
    horizon = round(height * 0.62)
    radius = width * 0.09
    cx = width / 2 + (width / 2 - 1.2 * radius) * math.sin(phase * math.tau)
    cy = horizon - radius - abs(math.sin(phase * math.tau)) * height * 0.25
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(250, 196, 60))
    shadow = radius * (0.6 + 0.4 * (cy + radius) / horizon)
    draw.ellipse([cx - shadow, horizon + radius * 0.1, cx + shadow, horizon + radius * 0.35], fill=(60, 96, 48))
    if image is not None:
        _reference(frame, image, 0.96 + 0.04 * math.sin(phase * math.tau))
    _prompt(draw, width, height, prompt)
    return frame


@lru_cache(maxsize=4)
def _scenery(width: int, height: int) -> Image.Image:
    """What does not move (so it costs the encoder next to nothing): sky and meadow."""
    scenery = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(scenery)
    horizon = round(height * 0.62)
    for y in range(horizon):
        t = y / horizon
        draw.line([(0, y), (width, y)], fill=(round(70 + 120 * t), round(120 + 90 * t), round(210 + 30 * t)))
    for y in range(horizon, height):
        t = (y - horizon) / (height - horizon)
        draw.line([(0, y), (width, y)], fill=(round(96 - 40 * t), round(150 - 50 * t), round(72 - 30 * t)))
    return scenery


def _reference(frame: Image.Image, image: Image.Image, zoom: float) -> None:
    side = round(min(frame.size) * 0.5 * zoom)
    thumb = image.convert("RGB").copy()
    thumb.thumbnail((side, side))
    frame.paste(thumb, ((frame.width - thumb.width) // 2, round(frame.height * 0.35 - thumb.height / 2)))


def _prompt(draw: ImageDraw.ImageDraw, width: int, height: int, prompt: str) -> None:
    """The prompt and the frame size in a band above the progress bar."""
    size = max(8, min(width, height) // 22)
    lines = [*textwrap.wrap(prompt or "(no prompt)", width=round(34 * width / min(width, height)))[:4]]
    lines.append(f"{width}x{height} · genq simulator")
    bottom = height - max(2, height // 160) * 4
    top = bottom - round((len(lines) + 0.6) * size * 1.25)
    draw.rectangle([0, top, width, bottom], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((width * 0.05, top + size * (0.5 + i * 1.25)), line, font=font(size), fill=(255, 255, 255))
