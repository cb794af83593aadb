"""A stand-in for the public web where users keep their input images (garment photos, references).

`genq run` serves it on loopback (and allow-lists it) so the README's examples work offline;
tests use it for the input rules: sizes, formats, dimensions, redirects.

- `GET /samples/garment.png`: a product (a red dress-like shape) on a light-grey backdrop, 512x512.
- `GET /samples/{w}x{h}.png|jpg|webp|gif`: a plain image of that size.
- `GET /samples/noise/{w}x{h}.png`: incompressible noise, for size caps (3 bytes a pixel).
- `GET /samples/not-an-image.txt`: text.
- `GET /samples/redirect?to=<url>`: a 302 to `to`.
"""

from __future__ import annotations

import io
import random
import re
from functools import lru_cache

import httpx
from PIL import Image, ImageDraw

from vendors.sim.common import file_response

_SIZED = re.compile(r"/samples/(noise/)?(\d{1,5})x(\d{1,5})\.(png|jpg|webp|gif)")
_TYPES = {"png": ("PNG", "image/png"), "jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_TYPES["gif"] = ("GIF", "image/gif")
MAX_SIDE = 8000


class SampleImages:
    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/samples/garment.png":
            return file_response(request, garment_png(), "image/png")
        if path == "/samples/not-an-image.txt":
            return httpx.Response(200, text="hello, not an image", headers={"Content-Type": "text/plain"})
        if path == "/samples/redirect" and "to" in request.url.params:
            return httpx.Response(302, headers={"Location": request.url.params["to"]})
        sized = _SIZED.fullmatch(path)
        if sized and max(int(sized.group(2)), int(sized.group(3))) <= MAX_SIDE:
            fmt, content_type = _TYPES[sized.group(4)]
            body = sized_image(int(sized.group(2)), int(sized.group(3)), fmt, noise=bool(sized.group(1)))
            return file_response(request, body, content_type)
        return httpx.Response(404, text="no such sample")


@lru_cache(maxsize=1)
def garment_png() -> bytes:
    image = Image.new("RGB", (512, 512), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    draw.polygon([(206, 80), (306, 80), (380, 440), (132, 440)], fill=(200, 30, 40))
    draw.rectangle((226, 60, 286, 100), fill=(170, 20, 30))
    return _encode(image, "PNG")


@lru_cache(maxsize=32)
def sized_image(width: int, height: int, fmt: str, *, noise: bool = False) -> bytes:
    if noise:
        pixels = random.Random(width * 100_003 + height).randbytes(width * height * 3)
        return _encode(Image.frombytes("RGB", (width, height), pixels), fmt)
    return _encode(Image.new("RGB", (width, height), (40, 120, 200)), fmt)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}))
    return buffer.getvalue()
