"""Tencent Cloud CI GoodsMatting simulator, URL-input form (VENDORS.md §6.2, §6.5, §7.2, §11).

Serves `GET /?ci-process=GoodsMatting&detect-url=<url>[&center-layout=1][&padding-layout=WxH]` on
any bucket Host, so `vendors.tencent_ci` runs against it unchanged. Every request must carry a COS
native signature (query string or Authorization header) checked by `tencent_cos.verify` against
the Host and path as received. The cut-out is a deterministic fake: pixels close to the border's
most common colour become transparent. Failures are COS XML `<Error>` documents:

| case                             | HTTP | `<Code>`                                         |
|----------------------------------|------|--------------------------------------------------|
| no signature / malformed         | 403  | `AccessDenied`                                   |
| expired / not yet valid          | 403  | `AccessDenied` ("Request has expired" / "...")   |
| unknown SecretId                 | 403  | `InvalidAccessKeyId`                             |
| wrong signature                  | 403  | `SignatureDoesNotMatch`                          |
| bad or missing option, not GET / | 400  | `InvalidArgument`                                |
| detect-url cannot be fetched     | 404  | `NoSuchKey` ("fail to download detect-url ...")  |
| input over `max_image_bytes`     | 400  | `InvalidArgument` ("image size exceeds ...")     |
| input not an image               | 400  | `InvalidImageFormat`                             |
| injected `slowdown`              | 503  | `SlowDown`                                       |
| injected `http_500`              | 500  | `InternalError`                                  |

The oversize and unreachable codes are our choice [I]: what real CI answers is unconfirmed.
`transport` raises `httpx.ConnectError` (HTTP 502 under `asgi_app`). Admin under `/__sim/` only.
`fetch(url) -> (bytes, content_type)` reads the input; it raises `httpx.HTTPError`, `InvalidURL` or
`OSError` when it cannot, and may stop reading past the size cap. One lock guards the state.
"""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final
from xml.sax.saxutils import escape

import httpx
from PIL import Image, ImageChops

from vendors.sim.common import (
    ApiKnobs,
    Call,
    SimulatorBase,
    admin_response,
    check_non_negative,
    file_response,
    mask_key,
)
from vendors.tencent_cos import FIELDS, Verdict, verify

ENDPOINT: Final = "GoodsMatting"
MAX_IMAGE_BYTES: Final = 32 * 1024 * 1024
MAX_PADDING: Final = 1000
_PADDING = re.compile(r"(\d{1,4})x(\d{1,4})")

Fetch = Callable[[str], tuple[bytes, str]]


@dataclass(frozen=True)
class TencentCiKnobs(ApiKnobs):
    """Every behaviour switch; `configure(**changes)` or `POST /__sim/config` swaps in a copy.
    `failure_rate` is global or `{"GoodsMatting" or "*": rate}`."""

    failure_kinds: ClassVar[frozenset[str]] = frozenset({"slowdown", "http_500", "transport"})
    failure_kind: str = "slowdown"
    max_image_bytes: int = MAX_IMAGE_BYTES
    key_tolerance: int = 48  # max channel distance from the border colour that counts as background
    clock_offset_s: float = 0.0  # the sim's clock minus the caller's (signature-window tests)
    fetch_timeout_s: float = 10.0  # the default fetch's timeout

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("max_image_bytes", self.max_image_bytes)
        check_non_negative("fetch_timeout_s", self.fetch_timeout_s)
        if isinstance(self.key_tolerance, bool) or not isinstance(self.key_tolerance, int):
            raise ValueError("key_tolerance must be an integer")
        if not 0 <= self.key_tolerance <= 255:
            raise ValueError("key_tolerance must be within 0..255")
        if isinstance(self.clock_offset_s, bool) or not isinstance(self.clock_offset_s, int | float):
            raise ValueError("clock_offset_s must be a number")


@dataclass(frozen=True)
class CosError:
    """A COS/CI XML error answer."""

    status: int
    code: str
    message: str


class Refused(Exception):
    """Stop processing and answer `error`."""

    def __init__(self, error: CosError) -> None:
        super().__init__(f"{error.status} {error.code}")
        self.error = error


def _refuse(status: int, code: str, message: str) -> Refused:
    return Refused(CosError(status, code, message))


@dataclass(frozen=True)
class _Options:
    detect_url: str
    center: bool
    padding: tuple[int, int] | None


_VERDICT_ERRORS: Final[Mapping[Verdict, CosError]] = {
    Verdict.MISSING: CosError(403, "AccessDenied", "Access Denied: the request carries no signature."),
    Verdict.MALFORMED: CosError(403, "AccessDenied", "Access Denied: the authorization is malformed."),
    Verdict.UNKNOWN_KEY: CosError(403, "InvalidAccessKeyId", "The SecretId does not exist."),
    Verdict.NOT_YET_VALID: CosError(403, "AccessDenied", "Request is not valid yet: q-sign-time starts later."),
    Verdict.EXPIRED: CosError(403, "AccessDenied", "Request has expired: q-sign-time is over."),
    Verdict.MISMATCH: CosError(403, "SignatureDoesNotMatch", "The calculated signature does not match."),
}

_INJECTED: Final[Mapping[str, CosError]] = {
    "slowdown": CosError(503, "SlowDown", "Please reduce your request rate."),
    "http_500": CosError(500, "InternalError", "We encountered an internal error. Please try again."),
}


class TencentCiSim(SimulatorBase[TencentCiKnobs]):
    """The simulator; see the module docstring."""

    def __init__(
        self,
        *,
        credentials: Mapping[str, str],
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        super().__init__(TencentCiKnobs(seed=seed), clock)
        self._credentials = dict(credentials)  # SecretId -> SecretKey
        self._fetch = fetch or self._http_fetch
        self._outcomes: Counter[str] = Counter()

    # --- Python-side conveniences for tests (the rest come from SimulatorBase) ----------------------

    def _forget(self) -> None:
        """Outcome counts go; credentials and knobs stay."""
        self._outcomes.clear()

    def stats(self) -> dict[str, object]:
        """Answers by outcome (`ok` or the XML code, `transport` for dropped connections)."""
        with self._lock:
            return {"outcomes": dict(sorted(self._outcomes.items())), "calls": sum(self._outcomes.values())}

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        """CI serves no stored files: outputs are computed per request."""
        return _error_response(CosError(404, "NoSuchKey", "The specified key does not exist."), request, "0")

    # --- HTTP entry point -----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: `/__sim/...` admin, else GoodsMatting (latency, chaos, auth, work)."""
        if request.url.path.startswith("/__sim/"):
            return admin_response(self, request)
        time.sleep(self._draw_latency())
        with self._lock:
            injected = self._draw_failure(ENDPOINT)
            kind, request_id = self._knobs.failure_kind, f"{self._rng.getrandbits(96):024x}"
        if injected and kind == "transport":
            self._record(request, "transport")
            raise httpx.ConnectError("simulated connection reset", request=request)
        try:
            if injected:
                raise Refused(_INJECTED[kind])
            png = self._matting(request)
        except Refused as refused:
            self._record(request, refused.error.code)
            return _error_response(refused.error, request, request_id)
        self._record(request, "ok")
        response = file_response(request, png, "image/png")
        response.headers["x-cos-request-id"] = request_id
        return response

    def _matting(self, request: httpx.Request) -> bytes:
        """Verify, read the options, fetch the input, cut it out; `Refused` for any refusal."""
        params = _params(request)
        with self._lock:
            knobs = self._knobs
            now = self._clock() + knobs.clock_offset_s
        verdict = verify(
            request.method, request.url.path, params, request.headers, credentials=self._credentials, now=now
        )
        if verdict is not Verdict.OK:
            raise Refused(_VERDICT_ERRORS[verdict])
        options = _options(request, params)
        content = self._fetch_input(options.detect_url)
        if len(content) > knobs.max_image_bytes:
            raise _refuse(400, "InvalidArgument", f"image size exceeds the {knobs.max_image_bytes} byte limit")
        return cut_out(content, center=options.center, padding=options.padding, tolerance=knobs.key_tolerance)

    def _fetch_input(self, url: str) -> bytes:
        try:
            content, _ = self._fetch(url)
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            raise _refuse(404, "NoSuchKey", f"fail to download detect-url: {type(exc).__name__}") from None
        return content

    def _http_fetch(self, url: str) -> tuple[bytes, str]:
        """The default `fetch`: a plain GET that stops reading one byte past `max_image_bytes`."""
        knobs = self._knobs
        data = bytearray()
        with httpx.stream("GET", url, timeout=knobs.fetch_timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > knobs.max_image_bytes:
                    break
            return bytes(data), response.headers.get("content-type", "")

    def _record(self, request: httpx.Request, outcome: str) -> None:
        """Log the call with its SecretId masked and no signature fields; count the outcome."""
        params = dict(request.url.params.multi_items())
        secret_id = params.get("q-ak") or _header_field(request.headers.get("authorization", ""), "q-ak")
        body: dict[str, object] = {k: v for k, v in params.items() if k not in FIELDS}
        with self._lock:
            call = Call(request.method, request.url.path, self._clock(), mask_key(secret_id), None, body)
            self._log.record(call)
            self._outcomes[outcome] += 1


# --- the fake cut-out -----------------------------------------------------------------------------


def cut_out(content: bytes, *, center: bool, padding: tuple[int, int] | None, tolerance: int) -> bytes:
    """A PNG with alpha: pixels within `tolerance` of the border's most common colour become
    transparent. `center` puts the product's bounding box in the middle of a canvas of the input's
    size; `padding` (dx, dy) makes the canvas the box plus those margins on each side [I]."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            rgba = matte(image, tolerance)
    except (OSError, Image.DecompressionBombError):  # UnidentifiedImageError is an OSError
        raise _refuse(400, "InvalidImageFormat", "The input is not a supported image.") from None
    box = rgba.getchannel("A").getbbox()
    if box is not None and (center or padding is not None):
        product = rgba.crop(box)
        dx, dy = padding if padding is not None else (0, 0)
        size = (product.width + 2 * dx, product.height + 2 * dy) if padding is not None else rgba.size
        rgba = Image.new("RGBA", size, (0, 0, 0, 0))
        rgba.paste(product, ((size[0] - product.width) // 2, (size[1] - product.height) // 2))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    return out.getvalue()


def matte(image: Image.Image, tolerance: int) -> Image.Image:
    """`image` as RGBA, transparent wherever it is within `tolerance` of its border's colour."""
    rgba = image.convert("RGBA")
    rgba.putalpha(ImageChops.darker(rgba.getchannel("A"), _foreground_mask(rgba, tolerance)))
    return rgba


def _foreground_mask(rgba: Image.Image, tolerance: int) -> Image.Image:
    """`L` mask: 255 where any channel differs from the border colour by more than `tolerance`."""
    rgb = rgba.convert("RGB")
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, _border_colour(rgb)))
    red, green, blue = diff.split()
    distance = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return distance.point(lambda value: 255 if value > tolerance else 0)


def _border_colour(rgb: Image.Image) -> tuple[int, ...] | float:
    """The most common colour of the one-pixel frame (ties broken by value, so deterministic)."""
    width, height = rgb.size
    edges = [(0, 0, width, 1), (0, height - 1, width, height), (0, 0, 1, height), (width - 1, 0, width, height)]
    counts: Counter[tuple[int, ...] | float] = Counter()
    for edge in edges:
        strip = rgb.crop(edge)
        for count, colour in strip.getcolors(maxcolors=strip.width * strip.height) or ():
            counts[colour] += count
    return max(counts, key=lambda colour: (counts[colour], str(colour)))


# --- wire helpers ---------------------------------------------------------------------------------


def _params(request: httpx.Request) -> dict[str, str]:
    """The query params; a name given twice is refused rather than guessed at."""
    items = request.url.params.multi_items()
    params = dict(items)
    if len(params) != len(items):
        raise _refuse(400, "InvalidArgument", "A query parameter is given more than once.")
    return params


def _options(request: httpx.Request, params: Mapping[str, str]) -> _Options:
    if request.method != "GET" or request.url.path != "/" or params.get("ci-process") != ENDPOINT:
        raise _refuse(400, "InvalidArgument", "Only GET /?ci-process=GoodsMatting&detect-url=... is simulated.")
    detect_url = params.get("detect-url", "")
    if not detect_url.lower().startswith(("http://", "https://")):
        raise _refuse(400, "InvalidArgument", "detect-url must be an http(s) URL.")
    center = params.get("center-layout", "0")
    if center not in ("0", "1"):
        raise _refuse(400, "InvalidArgument", "center-layout must be 0 or 1.")
    return _Options(detect_url, center == "1", _padding(params.get("padding-layout")))


def _padding(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    match = _PADDING.fullmatch(raw)
    if match is None or max(int(match.group(1)), int(match.group(2))) > MAX_PADDING:
        raise _refuse(400, "InvalidArgument", f"padding-layout must be <dx>x<dy>, each 0..{MAX_PADDING}.")
    return int(match.group(1)), int(match.group(2))


def _header_field(authorization: str, name: str) -> str:
    pairs = (part.partition("=") for part in authorization.split("&"))
    return next((value for key, _, value in pairs if key == name), "")


def _error_response(error: CosError, request: httpx.Request, request_id: str) -> httpx.Response:
    """COS's XML error document (VENDORS.md §7.3) with `x-cos-request-id`."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"<Resource>{escape(request.url.host + request.url.path)}</Resource>"
        f"<RequestId>{request_id}</RequestId></Error>"
    )
    headers = {"Content-Type": "application/xml", "x-cos-request-id": request_id}
    return httpx.Response(error.status, headers=headers, content=body.encode())
