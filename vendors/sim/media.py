"""What the simulators' outputs share: the size knob, a build-once cache, input fetching, type.

Outputs are made the first time they are downloaded, never when a task is accepted, and kept in
`CACHE` by what they depend on (the variant and the input), so a simulator serving a result many
times, or to many jobs with the same input, makes it once. `media_scale` (each media simulator's
knob, `SIM_MEDIA_SCALE` for `genq run`) scales resolution, duration and mesh detail: 1 gives the
vendors' sizes, tests use a small fraction so the suite stays fast.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Final

import httpx
from PIL import Image, ImageFont

MAX_INPUT_BYTES: Final = 30 * 1024 * 1024
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def check_scale(scale: object) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
        raise ValueError(f"media_scale must be within (0, 1], got {scale!r}")


def scaled(length: float, scale: float, *, minimum: int = 16, even: bool = False) -> int:
    """`length` times `scale`, at least `minimum`; rounded down to even when a codec needs it."""
    value = max(round(length * scale), minimum)
    return value - value % 2 if even else value


class MediaCache:
    """Each key is built once, however many threads ask at the same time; the least recently used
    entries go once the total passes `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, bytes] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}
        self._size = 0

    def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        with self._lock:
            gate = self._building.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    return self._done[key]
            value = build()
            with self._lock:
                self._done[key] = value
                self._size += len(value)
                self._building.pop(key, None)
                while self._size > self._max_bytes and len(self._done) > 1:
                    self._size -= len(self._done.popitem(last=False)[1])
            return value


CACHE: Final = MediaCache(max_bytes=512 * 1024 * 1024)


def fetch_bytes(url: str, *, timeout_s: float = 10.0, max_bytes: int = MAX_INPUT_BYTES) -> bytes | None:
    """The body at an http(s) `url`, or None when it cannot be had (or is larger than `max_bytes`)."""
    if not url.startswith(("http://", "https://")):
        return None
    data = bytearray()
    try:
        with _client().stream("GET", url, timeout=timeout_s) as response:
            if response.is_error:
                return None
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    return None
    except (httpx.HTTPError, httpx.InvalidURL):
        return None
    return bytes(data)


@lru_cache(maxsize=1)
def _client() -> httpx.Client:
    """One client for every fetch: making one loads the CA certificates, a good part of a second."""
    return httpx.Client(follow_redirects=True)


def open_image(content: bytes | None) -> Image.Image | None:
    """`content` decoded as an RGB(A) image, or None when it is not one."""
    if not content:
        return None
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()
            return image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


@lru_cache(maxsize=64)
def font(size: int) -> Font:
    """Pillow's bundled scalable font (no font files on the machine needed)."""
    return ImageFont.load_default(size=max(size, 6))


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
