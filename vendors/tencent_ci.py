"""Tencent Cloud CI (数据万象) GoodsMatting for `basic_clean` (VENDORS.md §6.2, §7.2, §10).

CI is synchronous, yet genq runs it through the same submit -> poll -> archive pipeline as every
vendor, so the work happens at download time: `outputs()` hands out a fresh presigned
`GET {bucket}/?ci-process=GoodsMatting&detect-url=<input>&center-layout=1` URL, and **the matting
is done, and billed, when genq's archiving step fetches that URL** (each fetch is one paid call).
`submit()` only validates the input and returns a task id derived from the idempotency key; nothing
reaches Tencent before archiving. `poll()` is `Done` at once; `cancel()` has nothing to stop.

The task id (`ci_{idempotency_key}_{12 hex of sha256(image_url)}`, <= 64 chars) cannot carry an
input URL of up to 2048 characters, so the client asks `inputs(idempotency_key)` for it (genq: the
job's `input["image_url"]`); the digest proves it is the URL that was validated at submit.

CI answers a transparent PNG; the white background is genq's: VENDORS §6.2 found no single CI rule
for it, so archiving calls `flatten_on_white` on the fetched bytes. A failed fetch of the output URL
(COS's XML `<Error>`) is archiving's to judge, like any download's: a later attempt asks afresh.
The SecretKey only enters the signature; it never appears in URLs, reprs or exception text.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx
from PIL import Image

from vendors.base import (
    Done,
    PollOutcome,
    VendorExpired,
    VendorFile,
    VendorRejected,
)
from vendors.tencent_cos import presign_url

VENDOR: Final = "tencent_ci"
MAX_URL_CHARS: Final = 2048

_KEY = re.compile(r"[A-Za-z0-9_.-]{1,48}")
_TASK = re.compile(r"ci_([A-Za-z0-9_.-]{1,48})_([0-9a-f]{12})")


@dataclass(frozen=True)
class MattingRequest:
    """Cut the product out of the image at `image_url` (http or https, fetched by CI)."""

    image_url: str


class TencentCiClient:
    """`basic_clean` as a `GenerationVendor`: see the module docstring for why nothing is called."""

    name = VENDOR
    can_cancel = True
    """True because nothing can be left running: `submit` is local, no Tencent task exists, and the
    paid call happens only when archiving fetches the output URL. `cancel` has nothing to stop."""

    def __init__(
        self,
        *,
        bucket_url: str,
        secret_id: str,
        secret_key: str,
        clock: Callable[[], float] = time.time,
        url_ttl_s: int = 600,
        inputs: Callable[[str], str | None] | None = None,
    ) -> None:
        if not secret_id or not secret_key:
            raise ValueError("tencent_ci secret_id and secret_key must be set")
        if url_ttl_s <= 0:
            raise ValueError("tencent_ci url_ttl_s must be positive")
        self._bucket_url = _origin(bucket_url)
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._clock = clock
        self._ttl_s = url_ttl_s
        self._inputs = inputs

    def __repr__(self) -> str:
        return f"TencentCiClient(bucket_url={self._bucket_url!r}, secret_id={self._secret_id!r})"

    def submit(self, request: object, *, idempotency_key: str) -> str:
        """Validate the input locally; return `ci_{idempotency_key}_{digest}`. No network, no bill."""
        if not isinstance(request, MattingRequest):
            raise TypeError(f"TencentCiClient.submit takes a MattingRequest, not {type(request).__name__}")
        if not _KEY.fullmatch(idempotency_key):
            raise ValueError("tencent_ci idempotency keys are 1-48 characters of [A-Za-z0-9_.-]")
        _check_image_url(request.image_url)
        if self._inputs is None:
            raise VendorRejected(VENDOR, "not_configured", "TencentCiClient needs inputs= to find a task's input")
        return f"ci_{idempotency_key}_{_digest(request.image_url)}"

    def poll(self, task_id: str) -> PollOutcome:
        """Always finished: the work happens when the output URL is fetched."""
        return Done(files=self.outputs(task_id))

    def outputs(self, task_id: str) -> tuple[VendorFile, ...]:
        """One PNG: a GoodsMatting URL presigned now (never cached), valid for `url_ttl_s`."""
        image_url = self._input_of(task_id)
        params = {"ci-process": "GoodsMatting", "detect-url": image_url, "center-layout": "1"}
        url = presign_url(
            self._bucket_url,
            "/",
            params,
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            now=self._clock(),
            ttl_s=self._ttl_s,
        )
        return (VendorFile(url=url, content_type="image/png", ext="png"),)

    def cancel(self, task_id: str) -> None:
        """Nothing runs at Tencent until the output is fetched, so there is nothing to stop: once the
        caller stops fetching, nothing more is billed (hence `can_cancel`)."""

    def _input_of(self, task_id: str) -> str:
        match = _TASK.fullmatch(task_id)
        if match is None or self._inputs is None:
            raise VendorExpired(VENDOR, "unknown_task", task_id[:80])
        image_url = self._inputs(match.group(1))
        if image_url is None:
            raise VendorExpired(VENDOR, "unknown_task", task_id)
        if _digest(image_url) != match.group(2):
            raise VendorRejected(VENDOR, "input_changed", f"{task_id}: the input URL is not the one submitted")
        return image_url


def flatten_on_white(png: bytes) -> bytes:
    """The image composited onto opaque white, as an RGB PNG (transparent pixels become white).

    Raises `ValueError` when `png` is not an image Pillow can read.
    """
    try:
        with Image.open(io.BytesIO(png)) as image:
            rgba = image.convert("RGBA")
    except (OSError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise ValueError(f"not a readable image: {type(exc).__name__}") from None
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    out = io.BytesIO()
    canvas.convert("RGB").save(out, format="PNG")
    return out.getvalue()


# --- helpers --------------------------------------------------------------------------------------


def _origin(bucket_url: str) -> str:
    """`scheme://host[:port]` of the bucket; a path, query or non-http scheme is a config error."""
    url = httpx.URL(bucket_url)
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/") or url.query:
        raise ValueError(f"tencent_ci bucket_url must be http(s)://<bucket host>, got {bucket_url!r}")
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _check_image_url(image_url: str) -> None:
    """http(s) with a host, <= 2048 characters, no whitespace or control characters."""
    problem = ""
    if len(image_url) > MAX_URL_CHARS:
        problem = f"longer than {MAX_URL_CHARS} characters"
    elif any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in image_url):
        problem = "contains whitespace or control characters"
    else:
        try:
            url = httpx.URL(image_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            problem = "is not an http(s) URL with a host"
    if problem:
        raise VendorRejected(VENDOR, "invalid_input", f"image_url {problem}")


def _digest(image_url: str) -> str:
    return hashlib.sha256(image_url.encode()).hexdigest()[:12]
