"""A stand-in for the public web where users keep their input images (garment photos, references).

`genq run` serves it on loopback (and allow-lists it) so the README's examples work offline;
tests use it for the input rules: sizes, formats, dimensions, redirects.

- `GET /samples/garment.png`: a product (a red dress-like shape) on a light-grey backdrop, 512x512.
- `GET /samples/dress.jpg`, `/samples/hoodie.jpg`, `/samples/coat.jpg`: product photos as a shop
  takes them (1024x1024 JPEG: studio backdrop, soft shadow, shaded fabric with folds, seams and
  grain), drawn here, not downloaded.
- `GET /samples/{w}x{h}.png|jpg|webp|gif`: a plain image of that size.
- `GET /samples/noise/{w}x{h}.png`: incompressible noise, for size caps (3 bytes a pixel).
- `GET /samples/not-an-image.txt`: text.
- `GET /samples/redirect?to=<url>`: a 302 to `to`.
"""

from __future__ import annotations

import io
import math
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final

import httpx
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from vendors.sim.common import file_response

_SIZED = re.compile(r"/samples/(noise/)?(\d{1,5})x(\d{1,5})\.(png|jpg|webp|gif)")
_PHOTO = re.compile(r"/samples/([a-z]+)\.jpg")
_TYPES = {"png": ("PNG", "image/png"), "jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_TYPES["gif"] = ("GIF", "image/gif")
MAX_SIDE = 8000
PHOTO_SIDE: Final = 1024
Point = tuple[float, float]


class SampleImages:
    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/samples/garment.png":
            return file_response(request, garment_png(), "image/png")
        photo = _PHOTO.fullmatch(path)
        if photo and photo.group(1) in GARMENTS:
            return file_response(request, garment_jpeg(photo.group(1)), "image/jpeg")
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


# --- photo-like garments -------------------------------------------------------------------------


@lru_cache(maxsize=8)
def garment_jpeg(name: str) -> bytes:
    return _encode_jpeg(garment_photo(name))


def _encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def garment_photo(name: str, side: int = PHOTO_SIDE) -> Image.Image:
    """One of `GARMENTS` as a product photo: the garment lit from the upper left, on a studio
    backdrop whose colour stays close to its border's, so a colour-keyed cut-out finds it."""
    spec = GARMENTS[name]
    rng = random.Random(name)
    photo = _backdrop(side, rng)
    mask = _mask(side, spec.outline)
    photo = _shadow(photo, mask, side)
    fabric = ImageChops.multiply(Image.new("RGB", (side, side), spec.colour), _lighting(side, mask, rng))
    spec.details(ImageDraw.Draw(fabric), side, spec.colour)
    photo.paste(_grain(fabric, rng, 10), mask=mask)
    return photo


class Garment:
    def __init__(
        self,
        colour: tuple[int, int, int],
        outline: Sequence[Sequence[Point]],
        details: Callable[[ImageDraw.ImageDraw, int, tuple[int, int, int]], None],
    ) -> None:
        self.colour, self.outline, self.details = colour, outline, details


def _backdrop(side: int, rng: random.Random) -> Image.Image:
    """Warm light grey, a touch lighter in the middle (the softbox), with a fine sensor grain."""
    base = (228, 226, 222)
    light = Image.radial_gradient("L").resize((side, side)).point(lambda v: 255 - v // 14)
    backdrop = ImageChops.multiply(Image.new("RGB", (side, side), base), light.convert("RGB"))
    return _grain(ImageChops.add(backdrop, Image.new("RGB", (side, side), (14, 14, 14))), rng, 6)


def _mask(side: int, outline: Sequence[Sequence[Point]]) -> Image.Image:
    """The garment's silhouette, drawn at twice the size and shrunk: soft, anti-aliased edges."""
    big = Image.new("L", (side * 2, side * 2), 0)
    draw = ImageDraw.Draw(big)
    for polygon in outline:
        draw.polygon([(x * side * 2, y * side * 2) for x, y in polygon], fill=255)
    return big.resize((side, side), Image.Resampling.LANCZOS)


def _shadow(photo: Image.Image, mask: Image.Image, side: int) -> Image.Image:
    """A soft contact shadow down and to the right of the garment, faint enough to key out."""
    offset = Image.new("L", mask.size, 0)
    offset.paste(mask, (side // 60, side // 40))
    shade = offset.resize((side // 8, side // 8)).filter(ImageFilter.GaussianBlur(2)).resize((side, side))
    darker = ImageChops.subtract(photo, Image.new("RGB", photo.size, (22, 22, 20)))
    return Image.composite(darker, photo, shade)


def _lighting(side: int, mask: Image.Image, rng: random.Random) -> Image.Image:
    """How bright the fabric is: lit from the upper left, rounder at the edges, soft vertical folds."""
    columns = Image.new("L", (side // 8, 1))
    phases = [(k, rng.random() * math.tau) for k in (2, 3, 5, 9)]
    for x in range(side // 8):
        u = x / (side // 8)
        fold = sum(0.05 * math.sin(u * math.tau * k + phase) for k, phase in phases)
        columns.putpixel((x, 0), round(255 * min(1.0, 0.72 + 0.18 * math.cos((u - 0.42) * 2.4) + fold)))
    folds = columns.resize((side, side), Image.Resampling.BICUBIC)
    rows = Image.linear_gradient("L").resize((side, side)).point(lambda v: 255 - v // 6)
    edges = mask.filter(ImageFilter.GaussianBlur(side // 60)).point(lambda v: 150 + v * 105 // 255)
    return ImageChops.multiply(ImageChops.multiply(folds, rows), edges).convert("RGB")


def _grain(image: Image.Image, rng: random.Random, amount: int) -> Image.Image:
    """Luminance noise of +-`amount`, deterministic per `rng`."""
    noise = Image.frombytes("L", image.size, rng.randbytes(image.width * image.height))
    noise = noise.point(lambda v: v * 2 * amount // 255).convert("RGB")
    return ImageChops.subtract(ImageChops.add(image, noise), Image.new("RGB", image.size, (amount,) * 3))


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    r, g, b = (min(255, round(c * factor)) for c in colour)
    return r, g, b


def _line(
    draw: ImageDraw.ImageDraw, side: int, points: Sequence[Point], fill: tuple[int, int, int], width: float
) -> None:
    draw.line([(x * side, y * side) for x, y in points], fill=fill, width=max(1, round(width * side)), joint="curve")


def _stitches(draw: ImageDraw.ImageDraw, side: int, start: Point, end: Point, fill: tuple[int, int, int]) -> None:
    """A dashed seam from `start` to `end`."""
    steps = max(2, round(math.dist(start, end) * side / 9))
    for i in range(0, steps - 1, 2):
        a = (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
        b = (start[0] + (end[0] - start[0]) * (i + 1) / steps, start[1] + (end[1] - start[1]) * (i + 1) / steps)
        _line(draw, side, [a, b], fill, 0.002)


def _sleeve_seams(draw: ImageDraw.ImageDraw, side: int, colour: tuple[int, int, int]) -> None:
    """Where the sleeves meet the body, and the folds at the elbows."""
    dark = _shade(colour, 0.55)
    for x, out in ((0.3, -1), (0.7, 1)):
        _line(draw, side, [(x, 0.3), (x, 0.47)], dark, 0.004)
        _line(draw, side, [(x + out * 0.045, 0.52), (x + out * 0.075, 0.54)], _shade(colour, 0.75), 0.003)


def _dress_details(draw: ImageDraw.ImageDraw, side: int, colour: tuple[int, int, int]) -> None:
    dark = _shade(colour, 0.62)
    _line(draw, side, [(0.415, 0.43), (0.50, 0.445), (0.585, 0.43)], dark, 0.006)  # waist seam
    for x in (0.44, 0.56):
        _stitches(draw, side, (x, 0.24), (x + (0.5 - x) * 0.2, 0.42), _shade(colour, 0.8))
    _stitches(draw, side, (0.27, 0.85), (0.73, 0.85), _shade(colour, 0.75))  # hem


def _hoodie_details(draw: ImageDraw.ImageDraw, side: int, colour: tuple[int, int, int]) -> None:
    dark, light = _shade(colour, 0.6), _shade(colour, 1.5)
    _sleeve_seams(draw, side, colour)
    draw.ellipse([side * 0.435, side * 0.2, side * 0.565, side * 0.33], fill=_shade(colour, 0.45))  # hood opening
    draw.polygon(
        [(side * x, side * y) for x, y in ((0.38, 0.58), (0.62, 0.58), (0.66, 0.71), (0.34, 0.71))],
        outline=dark,
        width=max(1, side // 170),
    )
    _line(draw, side, [(0.3, 0.765), (0.7, 0.765)], dark, 0.004)  # ribbed waistband
    for cuff in ((0.14, 0.715), (0.78, 0.715)):
        _line(draw, side, [cuff, (cuff[0] + 0.08, cuff[1] + 0.015)], dark, 0.004)
    for x in (0.47, 0.53):  # drawstrings with their tips
        _line(draw, side, [(x, 0.32), (x - 0.004, 0.45)], (236, 236, 236), 0.005)
        _line(draw, side, [(x - 0.004, 0.45), (x - 0.004, 0.47)], (190, 190, 190), 0.007)
    _stitches(draw, side, (0.36, 0.6), (0.39, 0.7), light)


def _coat_details(draw: ImageDraw.ImageDraw, side: int, colour: tuple[int, int, int]) -> None:
    dark = _shade(colour, 0.6)
    _sleeve_seams(draw, side, colour)
    for lapel in (((0.42, 0.2), (0.5, 0.43), (0.45, 0.3)), ((0.58, 0.2), (0.5, 0.43), (0.55, 0.3))):
        draw.polygon([(side * x, side * y) for x, y in lapel], fill=_shade(colour, 0.82), outline=dark)
    draw.rectangle([side * 0.29, side * 0.5, side * 0.71, side * 0.535], fill=_shade(colour, 0.78))  # belt
    draw.rectangle(
        [side * 0.475, side * 0.495, side * 0.525, side * 0.54], outline=(70, 60, 50), width=max(1, side // 200)
    )
    for x in (0.46, 0.54):
        for y in (0.45, 0.6, 0.7):
            r = side * 0.011
            draw.ellipse([side * x - r, side * y - r, side * x + r, side * y + r], fill=(60, 44, 30))
            draw.ellipse([side * x - r / 3, side * y - r / 2, side * x, side * y - r / 6], fill=(120, 96, 70))
    for x0 in (0.33, 0.57):
        _line(draw, side, [(x0, 0.64), (x0 + 0.1, 0.645)], dark, 0.005)  # pocket flaps
    _line(draw, side, [(0.5, 0.43), (0.5, 0.9)], dark, 0.003)


_SLEEVES: Final = (((0.3, 0.3), (0.21, 0.34), (0.13, 0.73), (0.22, 0.76), (0.3, 0.47)),
                   ((0.7, 0.3), (0.79, 0.34), (0.87, 0.73), (0.78, 0.76), (0.7, 0.47)))  # fmt: skip
GARMENTS: Final = {
    "dress": Garment(
        (184, 28, 44),
        [((0.38, 0.2), (0.44, 0.2), (0.5, 0.27), (0.56, 0.2), (0.62, 0.2), (0.61, 0.33), (0.585, 0.43),
          (0.75, 0.86), (0.62, 0.885), (0.5, 0.89), (0.38, 0.885), (0.25, 0.86), (0.415, 0.43), (0.39, 0.33)),
         ((0.39, 0.2), (0.41, 0.1), (0.425, 0.1), (0.44, 0.2)), ((0.56, 0.2), (0.575, 0.1), (0.59, 0.1), (0.61, 0.2))],
        _dress_details,
    ),
    "hoodie": Garment(
        (38, 58, 98),
        [((0.3, 0.3), (0.7, 0.3), (0.7, 0.8), (0.3, 0.8)), *_SLEEVES,
         ((0.4, 0.32), (0.39, 0.2), (0.44, 0.15), (0.56, 0.15), (0.61, 0.2), (0.6, 0.32))],
        _hoodie_details,
    ),
    "coat": Garment(
        (172, 128, 82),
        [((0.31, 0.21), (0.42, 0.19), (0.5, 0.24), (0.58, 0.19), (0.69, 0.21), (0.72, 0.9), (0.28, 0.9)),
         *_SLEEVES, ((0.42, 0.19), (0.44, 0.14), (0.56, 0.14), (0.58, 0.19), (0.5, 0.24))],
        _coat_details,
    ),
}  # fmt: skip
"""The photo-like samples by name (`/samples/{name}.jpg`): colour, silhouette (unit square), details."""
