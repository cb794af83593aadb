"""RunningHub's model photos, simulated: the submitted garment worn by a figure, twelve poses.

A photo is a portrait of the vendor's size (`SIZE` at `media_scale` 1; a PNG of ~1-3 MB, like a
ComfyUI SaveImage): a backdrop for the scene the prompt names, a drawn figure in one of `POSES`
wearing the garment cut out of the input image (colour keying, as the CI simulator does), film
grain, and a caption naming the scene and the pose, which the PNG's text chunks carry too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

from vendors.sim.media import encode, font, scaled
from vendors.sim.tencent_ci import matte

SIZE: Final = (1024, 1536)
SKIN: Final = (226, 188, 160)
HAIR: Final = (58, 40, 30)
TROUSERS: Final = (46, 48, 58)
TOP: Final = (214, 214, 218)
Colour = tuple[int, int, int]
Point = tuple[float, float]


@dataclass(frozen=True)
class Pose:
    """`turn` narrows the body (1 facing us, ~0.5 in profile); `arms` are degrees out from hanging
    down (left, right), `elbows` the forearms' further bend; `zoom` = (x, y, factor) crops a close-up."""

    name: str
    x: float = 0.5
    turn: float = 1.0
    back: bool = False
    arms: tuple[float, float] = (12, 12)
    elbows: tuple[float, float] = (0, 0)
    stride: float = 0.0
    seated: bool = False
    zoom: tuple[float, float, float] | None = None


POSES: Final = (
    Pose("front"),
    Pose("back", back=True, arms=(9, 9)),
    Pose("three-quarter left", x=0.46, turn=0.8, arms=(6, 22)),
    Pose("three-quarter right", x=0.54, turn=0.8, arms=(22, 6)),
    Pose("profile left", x=0.48, turn=0.58, arms=(4, 4)),
    Pose("profile right", x=0.52, turn=0.58, arms=(4, 4)),
    Pose("walking", arms=(6, 26), elbows=(12, 18), stride=0.05),
    Pose("seated", seated=True, arms=(24, 24), elbows=(-40, -40)),
    Pose("hand on hip", arms=(48, 10), elbows=(-115, 0)),
    Pose("arms raised", arms=(155, 155), elbows=(10, 10)),
    Pose("close-up: neckline", zoom=(0.5, 0.3, 2.2)),
    Pose("close-up: detail", zoom=(0.5, 0.48, 2.8)),
)
SCENES: Final = ("street", "studio", "indoor")
CATEGORIES: Final = ("shoes", "dress", "hoodie", "coat")
_SCENE_WORDS: Final = {"street": "street", "studio": "studio", "apartment": "indoor", "indoor": "indoor"}


def scene_of(text: str) -> str:
    """The scene a prompt asks for (genq's pose12 prompts name it); `studio` when none is named."""
    lowered = text.lower()
    return next((scene for word, scene in _SCENE_WORDS.items() if word in lowered), "studio")


def category_of(text: str) -> str:
    lowered = text.lower()
    return next((category for category in CATEGORIES if category in lowered), "garment")


def pose_photo(garment: Image.Image, *, scene: str, category: str, index: int, scale: float, prompt: str) -> bytes:
    """Photo `index` (0-based) of a set, PNG bytes of `SIZE` times `scale`; `garment` is `cut_out`'s."""
    width, height = scaled(SIZE[0], scale), scaled(SIZE[1], scale)
    pose = POSES[index % len(POSES)]
    canvas = _backdrop(scene, width, height).copy()
    _dress_figure(canvas, pose, garment, category)
    if pose.zoom is not None:
        canvas = _zoom(canvas, pose.zoom)
    canvas = ImageChops.add(canvas, _grain(width, height), offset=-5)
    number = index % len(POSES) + 1
    _caption(
        canvas, f"{scene.upper()}  ·  {pose.name}", f"pose {number} of {len(POSES)}  ·  {category}  ·  genq simulator"
    )
    info = PngInfo()
    for key, value in (("prompt", prompt), ("scene", scene), ("pose", pose.name), ("category", category)):
        info.add_itxt(key, value)
    return encode(canvas, "PNG", pnginfo=info, compress_level=1)


def cut_out(garment: Image.Image) -> Image.Image:
    """The garment alone (RGBA, cropped to it); the whole image when keying finds nothing."""
    rgba = matte(garment, tolerance=48)
    box = rgba.getchannel("A").getbbox()
    return rgba.crop(box) if box else garment.convert("RGBA")


# --- the figure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """Joint positions in pixels for one pose on one canvas."""

    unit: float  # a head's height
    cx: float
    head: float  # the head's centre
    shoulders: float
    hips: float
    knees: float
    feet: float
    half_shoulders: float
    half_hips: float


def _body(pose: Pose, width: int, height: int) -> _Body:
    unit = 0.105 * height
    top = 0.09 * height + (1.1 * unit if pose.seated else 0)
    shoulders = top + 1.35 * unit
    hips = shoulders + 2.5 * unit
    return _Body(
        unit=unit, cx=pose.x * width, head=top + 0.5 * unit, shoulders=shoulders, hips=hips,
        knees=hips + (0.25 if pose.seated else 1.75) * unit, feet=0.862 * height,
        half_shoulders=0.95 * unit * pose.turn, half_hips=0.62 * unit * pose.turn,
    )  # fmt: skip


def _dress_figure(canvas: Image.Image, pose: Pose, garment: Image.Image, category: str) -> None:
    body = _body(pose, canvas.width, canvas.height)
    draw = ImageDraw.Draw(canvas)
    _floor_shadow(canvas, body)
    if pose.seated:
        _stool(draw, body)
    _legs(draw, pose, body, bare=category == "dress")
    if category == "shoes":
        _on_feet(canvas, pose, body, garment)
    hands = _arms(draw, pose, body)
    draw.polygon(_torso(body, 0.8), fill=SKIN if category == "dress" else TOP)  # under the garment
    if category != "shoes":
        _on_torso(canvas, pose, body, garment, category)
    _head(draw, pose, body)
    for x, y in hands:
        r = 0.17 * body.unit
        draw.ellipse([x - r, y - r, x + r, y + r], fill=SKIN)


def _torso(body: _Body, width: float) -> list[Point]:
    s, h = body.half_shoulders * width, body.half_hips * width
    return [
        (body.cx - s, body.shoulders),
        (body.cx + s, body.shoulders),
        (body.cx + h, body.hips),
        (body.cx - h, body.hips),
    ]


def _limb(draw: ImageDraw.ImageDraw, points: list[Point], colour: Colour, thickness: float) -> None:
    draw.line(points, fill=colour, width=max(1, round(thickness)), joint="curve")
    r = thickness / 2
    for x, y in points:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _legs(draw: ImageDraw.ImageDraw, pose: Pose, body: _Body, *, bare: bool) -> None:
    spread = pose.stride * draw.im.size[0]
    for side in (-1, 1):
        hip = (body.cx + side * body.half_hips * 0.5, body.hips)
        knee = (hip[0] + side * (spread / 2 + (0.35 * body.unit if pose.seated else 0)), body.knees)
        foot = (hip[0] + side * spread, body.feet)
        _limb(draw, [hip, knee, foot], SKIN if bare else TROUSERS, 0.42 * body.unit)
        draw.ellipse([foot[0] - 0.3 * body.unit, foot[1] - 0.1 * body.unit, foot[0] + 0.3 * body.unit,
                      foot[1] + 0.12 * body.unit], fill=(30, 30, 34))  # fmt: skip


def _arms(draw: ImageDraw.ImageDraw, pose: Pose, body: _Body) -> list[Point]:
    hands = []
    for side, angle, bend in ((-1, pose.arms[0], pose.elbows[0]), (1, pose.arms[1], pose.elbows[1])):
        shoulder = (body.cx + side * body.half_shoulders * 0.9, body.shoulders + 0.12 * body.unit)
        elbow = _step(shoulder, side, angle, 1.3 * body.unit)
        hand = _step(elbow, side, angle + bend, 1.2 * body.unit)
        _limb(draw, [shoulder, elbow, hand], SKIN, 0.3 * body.unit)
        hands.append(hand)
    return hands


def _step(start: Point, side: int, degrees: float, length: float) -> Point:
    """From `start`, `length` along a limb `degrees` out from hanging straight down."""
    rad = math.radians(degrees)
    return start[0] + side * math.sin(rad) * length, start[1] + math.cos(rad) * length


def _head(draw: ImageDraw.ImageDraw, pose: Pose, body: _Body) -> None:
    u, cx, cy = body.unit, body.cx, body.head
    draw.rectangle([cx - 0.14 * u, cy + 0.3 * u, cx + 0.14 * u, body.shoulders + 0.05 * u], fill=SKIN)  # neck
    rx = 0.36 * u * max(pose.turn, 0.8)
    draw.ellipse([cx - rx, cy - 0.5 * u, cx + rx, cy + 0.5 * u], fill=HAIR if pose.back else SKIN)
    if not pose.back:
        draw.chord([cx - rx * 1.06, cy - 0.56 * u, cx + rx * 1.06, cy + 0.2 * u], 180, 360, fill=HAIR)
        draw.polygon([(cx - rx * 1.06, cy - 0.18 * u), (cx - rx * 1.12, cy + 0.55 * u), (cx - rx * 0.7, cy + 0.5 * u),
                      (cx - rx * 0.8, cy - 0.05 * u)], fill=HAIR)  # fmt: skip


def _on_torso(canvas: Image.Image, pose: Pose, body: _Body, garment: Image.Image, category: str) -> None:
    """The garment over the body: shoulders to the knees for a dress, to mid-thigh for a coat."""
    u = body.unit
    top, bottom, widen = {
        "dress": (body.shoulders - 0.2 * u, body.hips + 1.9 * u, 1.6),
        "coat": (body.shoulders - 0.35 * u, body.hips + 1.3 * u, 2.2),
        "hoodie": (body.shoulders - 0.75 * u, body.hips + 0.45 * u, 2.3),
    }.get(category, (body.shoulders - 0.5 * u, body.hips + 0.3 * u, 2.0))
    if pose.seated:
        bottom = min(bottom, body.hips + 0.35 * u)
    box_w = 2 * body.half_shoulders * widen
    _paste(canvas, _styled(garment, pose), (body.cx, top), box_w, bottom - top)


def _on_feet(canvas: Image.Image, pose: Pose, body: _Body, garment: Image.Image) -> None:
    spread = pose.stride * canvas.width
    for side in (-1, 1):
        shoe = _styled(garment if side > 0 else ImageOps.mirror(garment), pose)
        x = body.cx + side * (body.half_hips * 0.5 + spread)
        _paste(canvas, shoe, (x, body.feet - 0.55 * body.unit), 1.1 * body.unit, 0.75 * body.unit)


def _styled(garment: Image.Image, pose: Pose) -> Image.Image:
    """Seen from behind: mirrored and in shade; turned: narrower."""
    if pose.back:
        garment = ImageOps.mirror(garment)
        shade = Image.new("RGBA", garment.size, (0, 0, 0, 0))
        shade.putalpha(garment.getchannel("A").point(lambda a: a * 28 // 255))
        garment = Image.alpha_composite(garment, shade)
    if pose.turn < 1:
        garment = garment.resize((max(1, round(garment.width * pose.turn)), garment.height))
    return garment


def _paste(canvas: Image.Image, item: Image.Image, top_centre: Point, box_w: float, box_h: float) -> None:
    ratio = min(box_w / item.width, box_h / item.height)
    size = (max(1, round(item.width * ratio)), max(1, round(item.height * ratio)))
    fitted = item.resize(size, Image.Resampling.BICUBIC)
    canvas.paste(fitted, (round(top_centre[0] - size[0] / 2), round(top_centre[1])), fitted)


def _stool(draw: ImageDraw.ImageDraw, body: _Body) -> None:
    u, cx, seat = body.unit, body.cx, body.hips + 0.15 * body.unit
    draw.rectangle([cx - 1.1 * u, seat, cx + 1.1 * u, seat + 0.25 * u], fill=(92, 64, 44))
    for x in (cx - 0.95 * u, cx + 0.8 * u):
        draw.rectangle([x, seat + 0.25 * u, x + 0.15 * u, body.feet], fill=(80, 56, 38))


def _floor_shadow(canvas: Image.Image, body: _Body) -> None:
    small = Image.new("L", (max(1, canvas.width // 8), max(1, canvas.height // 8)), 0)
    u, cx, y = body.unit / 8, body.cx / 8, body.feet / 8
    ImageDraw.Draw(small).ellipse([cx - 1.6 * u, y - 0.2 * u, cx + 1.6 * u, y + 0.35 * u], fill=110)
    mask = small.filter(ImageFilter.GaussianBlur(max(1, u / 4))).resize(canvas.size, Image.Resampling.BILINEAR)
    canvas.paste((20, 20, 24), mask=mask)


def _zoom(canvas: Image.Image, zoom: tuple[float, float, float]) -> Image.Image:
    x, y, factor = zoom
    w, h = canvas.width / factor, canvas.height / factor
    left, top = (
        min(max(x * canvas.width - w / 2, 0), canvas.width - w),
        min(max(y * canvas.height - h / 2, 0), canvas.height - h),
    )
    return canvas.resize(canvas.size, Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))


def _caption(canvas: Image.Image, title: str, subtitle: str) -> None:
    band = round(canvas.height * 0.1)
    box = (0, canvas.height - band, canvas.width, canvas.height)
    strip = Image.blend(canvas.crop(box), Image.new("RGB", (canvas.width, band)), 0.6)  # darkened
    draw = ImageDraw.Draw(strip)
    margin = canvas.width * 0.05
    draw.text((margin, band * 0.18), title, font=font(round(band * 0.34)), fill=(255, 255, 255))
    draw.text((margin, band * 0.64), subtitle, font=font(round(band * 0.2)), fill=(210, 210, 210))
    canvas.paste(strip, box[:2])


@lru_cache(maxsize=4)
def _grain(width: int, height: int) -> Image.Image:
    """Luminance noise of 0..10, added then offset by 5: +-5 around each pixel."""
    noise = Image.frombytes("L", (width, height), random.Random(width * height).randbytes(width * height))
    return noise.point(lambda v: v * 10 // 255).convert("RGB")


# --- the scenes ------------------------------------------------------------------------------------


@lru_cache(maxsize=12)
def _backdrop(scene: str, width: int, height: int) -> Image.Image:
    """Drawn at a quarter of the size and enlarged: soft, as behind a model at a wide aperture."""
    small = Image.new("RGB", (max(8, width // 4), max(8, height // 4)))
    _PAINTERS.get(scene, _studio)(ImageDraw.Draw(small), small.width, small.height, random.Random(scene))
    return small.filter(ImageFilter.GaussianBlur(0.8)).resize((width, height), Image.Resampling.BICUBIC)


def _gradient(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], top: Colour, bottom: Colour) -> None:
    x0, y0, x1, y1 = box
    rows = max(1, round(y1 - y0))
    for i in range(rows):
        t = i / rows
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(x0, y0 + i), (x1, y0 + i)], fill=colour)


def _street(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    horizon = 0.6 * h
    _gradient(draw, (0, 0, w, horizon), (132, 178, 226), (222, 230, 236))
    x = -rng.uniform(0, 0.1 * w)
    while x < w:
        bw, bh = rng.uniform(0.16, 0.3) * w, rng.uniform(0.22, 0.5) * h
        shade = rng.randint(150, 205)
        colour = (shade, shade - rng.randint(0, 18), shade - rng.randint(10, 34))
        draw.rectangle([x, horizon - bh, x + bw, horizon], fill=colour)
        for wx in range(int(x + bw * 0.1), int(x + bw * 0.9), max(2, int(bw / 5))):
            for wy in range(int(horizon - bh * 0.92), int(horizon - 0.04 * h), max(2, int(h / 30))):
                draw.rectangle([wx, wy, wx + bw / 10, wy + h / 60], fill=(96, 112, 130))
        x += bw + rng.uniform(0, 0.02) * w
    _gradient(draw, (0, horizon, w, h), (128, 126, 124), (172, 168, 162))
    draw.line([(0, horizon + 0.02 * h), (w, horizon + 0.02 * h)], fill=(200, 196, 188), width=max(1, h // 150))
    for _ in range(9):  # out-of-focus lights
        bx, by, r = rng.uniform(0, w), rng.uniform(0.3 * h, 0.6 * h), rng.uniform(0.01, 0.03) * w
        draw.ellipse([bx - r, by - r, bx + r, by + r], fill=(250, 236, 200))


def _studio(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    _gradient(draw, (0, 0, w, 0.72 * h), (196, 198, 202), (236, 236, 238))
    _gradient(draw, (0, 0.72 * h, w, h), (236, 236, 238), (214, 214, 217))
    draw.ellipse([0.15 * w, 0.08 * h, 0.85 * w, 0.6 * h], fill=(240, 240, 242))  # the softbox's pool of light


def _indoor(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    floor = 0.7 * h
    _gradient(draw, (0, 0, w, floor), (224, 208, 184), (238, 226, 206))
    draw.rectangle([0.04 * w, 0.12 * h, 0.34 * w, 0.58 * h], fill=(252, 250, 240))  # window
    for x in (0.04, 0.19, 0.34):
        draw.line([(x * w, 0.12 * h), (x * w, 0.58 * h)], fill=(196, 184, 166), width=max(1, w // 60))
    draw.line([(0.04 * w, 0.35 * h), (0.34 * w, 0.35 * h)], fill=(196, 184, 166), width=max(1, w // 60))
    _gradient(draw, (0, floor, w, h), (156, 112, 76), (128, 90, 60))
    for i in range(1, 8):  # floorboards
        draw.line([(i * w / 8 - (i - 4) * 0.05 * w, floor), (i * w / 8 - (i - 4) * 0.2 * w, h)], fill=(118, 84, 56))
    for _ in range(14):  # a plant in the corner
        lx, ly = rng.uniform(0.78, 0.95) * w, rng.uniform(0.38, 0.62) * h
        draw.ellipse([lx - 0.05 * w, ly - 0.02 * h, lx + 0.05 * w, ly + 0.02 * h], fill=(64, 112, 60))
    draw.rectangle([0.8 * w, 0.6 * h, 0.93 * w, 0.72 * h], fill=(176, 96, 70))


_PAINTERS: Final[dict[str, Callable[[ImageDraw.ImageDraw, int, int, random.Random], None]]] = {
    "street": _street,
    "studio": _studio,
    "indoor": _indoor,
}
