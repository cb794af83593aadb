"""Input images, checked by the API before anything is charged (SPEC §2).

An image URL is fetched by us, so it must point at the public internet (infra/netguard.py): its
name is resolved once, every answer must be public or allow-listed by FETCH_ALLOWLIST (CIDRs, or
host:port pairs), and the request goes to the address that was checked; every redirect hop is
checked and pinned again. The body is streamed and capped; only the image's header is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import AsyncIterable, Iterable

import httpx
from PIL import Image, UnidentifiedImageError

from domain.errors import InvalidInput
from domain.inputs import ImageFacts, ImageLimits, ImageSource, check_image
from infra.netguard import IP, Allowlist, NetGuard, Resolver, aimed, is_public, system_resolver

__all__ = ["IP", "MAX_REDIRECTS", "Allowlist", "ImageInspector", "check_public_url", "is_public"]

MAX_REDIRECTS = 3


class ImageInspector:
    """Fetches (size-capped) or decodes an input image and checks it against the input rules.

    `from_url` uses `client`; `afrom_url` uses `aclient` (made from `client`'s timeout if not given).
    """

    def __init__(
        self,
        client: httpx.Client,
        allowlist: Allowlist,
        limits: ImageLimits | None = None,
        *,
        aclient: httpx.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._client = client
        self._aclient = aclient
        self._allow = allowlist
        self._guard = NetGuard(allowlist, what="images", resolve=resolver)
        self._limits = limits or ImageLimits()

    @property
    def allowlist(self) -> Allowlist:
        return self._allow

    def from_url(self, field: str, url: str) -> ImageFacts:
        return self._checked(field, self._fetch(field, url), ImageSource.URL)

    async def afrom_url(self, field: str, url: str) -> ImageFacts:
        """`from_url` without holding a thread: the name is resolved in a worker thread, the body
        streamed on the event loop; InvalidInput (AddressRefused for a refused address) as there."""
        return self._checked(field, await self._afetch(field, url), ImageSource.URL)

    def from_base64(self, field: str, data: str) -> ImageFacts:
        if len(data) > self._limits.base64_max_bytes * 4 // 3 + 4:
            raise InvalidInput(field, f"at most {self._limits.base64_max_bytes} bytes of image as base64")
        try:
            body = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(field, "not valid base64") from None
        return self._checked(field, body, ImageSource.BASE64)

    def from_bytes(self, field: str, body: bytes) -> ImageFacts:
        """An image we already hold (a direct upload): the URL rules for size and pixels."""
        return self._checked(field, body, ImageSource.URL)

    def check_target(self, field: str, url: str) -> None:
        self._guard.target(field, url)

    def _checked(self, field: str, body: bytes, source: ImageSource) -> ImageFacts:
        facts = _facts(field, body)
        check_image(field, facts, source, self._limits)
        return facts

    def _fetch(self, field: str, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            target = self._guard.target(field, url)  # first: it refuses what httpx cannot parse
            request = aimed(self._client.build_request("GET", url), target)
            try:
                resp = self._client.send(request, stream=True, follow_redirects=False)
                try:
                    hop = self._next_hop(field, url, resp)
                    if hop is None:
                        return _read_capped(field, resp.iter_bytes(), self._limits.url_max_bytes)
                finally:
                    resp.close()
            except httpx.HTTPError as exc:
                raise InvalidInput(field, f"the image could not be fetched ({type(exc).__name__})") from None
            url = hop
        raise InvalidInput(field, f"more than {MAX_REDIRECTS} redirects")

    async def _afetch(self, field: str, url: str) -> bytes:
        client = self._async_client()
        for _ in range(MAX_REDIRECTS + 1):
            target = await self._guard.atarget(field, url)
            request = aimed(client.build_request("GET", url), target)
            try:
                resp = await client.send(request, stream=True, follow_redirects=False)
                try:
                    hop = self._next_hop(field, url, resp)
                    if hop is None:
                        return await _aread_capped(field, resp.aiter_bytes(), self._limits.url_max_bytes)
                finally:
                    await resp.aclose()
            except httpx.HTTPError as exc:
                raise InvalidInput(field, f"the image could not be fetched ({type(exc).__name__})") from None
            url = hop
        raise InvalidInput(field, f"more than {MAX_REDIRECTS} redirects")

    def _next_hop(self, field: str, url: str, resp: httpx.Response) -> str | None:
        """Where a redirect leads (joined to the URL asked for, not the pinned address), or None to
        read this answer's body; a failed answer, or one declaring a body over the cap, is refused."""
        if resp.is_redirect and "location" in resp.headers:
            return str(httpx.URL(url).join(resp.headers["location"]))
        if resp.status_code != 200:
            raise InvalidInput(field, f"fetching the image answered HTTP {resp.status_code}")
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limits.url_max_bytes:
            raise _too_large(field, self._limits.url_max_bytes)
        return None

    def _async_client(self) -> httpx.AsyncClient:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(timeout=self._client.timeout)
        return self._aclient


def check_public_url(
    field: str, url: str, allow: Allowlist, *, what: str, resolver: Resolver = system_resolver
) -> None:
    """Refuse URLs we must not reach: unusable, not http(s), or resolving to a non-public address
    (unless allow-listed). A check only: whoever connects later checks again (and pins)."""
    NetGuard(allow, what=what, resolve=resolver).target(field, url)


def _read_capped(field: str, chunks: Iterable[bytes], cap: int) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise _too_large(field, cap)
    return bytes(body)


async def _aread_capped(field: str, chunks: AsyncIterable[bytes], cap: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise _too_large(field, cap)
    return bytes(body)


def _too_large(field: str, cap: int) -> InvalidInput:
    return InvalidInput(field, f"the image is over {cap} bytes; at most {cap} by url")


def _facts(field: str, body: bytes) -> ImageFacts:
    """Reads the header only (`Image.open` is lazy; nothing calls `load`): pixels stay undecoded."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            return ImageFacts(len(body), image.width, image.height, image.format or "")
    except (UnidentifiedImageError, OSError):
        raise InvalidInput(field, "not an image (PNG, JPEG or WEBP)") from None
