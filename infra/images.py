"""Input images, checked by the API before anything is charged (SPEC §2).

An image URL is fetched by us, so it must point at the public internet: loopback, private,
link-local (cloud metadata at 169.254.169.254 among them), shared and reserved addresses are
refused unless FETCH_ALLOWLIST names them (CIDRs, or host:port pairs), and every redirect hop is
checked again. Known gap, left for later: a host whose DNS answer changes between our check and
the connection (DNS rebinding) is not pinned.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from PIL import Image, UnidentifiedImageError

from domain.errors import InvalidInput
from domain.inputs import ImageFacts, ImageLimits, ImageSource, check_image

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    endpoints: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        networks, endpoints = [], set()
        for item in filter(None, (part.strip() for part in text.split(","))):
            host, sep, port = item.rpartition(":")
            if sep and port.isdigit() and "/" not in item:
                endpoints.add((host.strip("[]").lower(), int(port)))
            else:
                networks.append(ipaddress.ip_network(item, strict=False))
        return cls(tuple(networks), frozenset(endpoints))

    def allows(self, host: str, port: int, address: IP) -> bool:
        if (host.lower(), port) in self.endpoints or (str(address), port) in self.endpoints:
            return True
        return any(address in network for network in self.networks)


def is_public(address: IP) -> bool:
    return address.is_global and not address.is_multicast


class ImageInspector:
    """Fetches (size-capped) or decodes an input image and checks it against the input rules."""

    def __init__(self, client: httpx.Client, allowlist: Allowlist, limits: ImageLimits | None = None) -> None:
        self._client = client
        self._allow = allowlist
        self._limits = limits or ImageLimits()

    @property
    def allowlist(self) -> Allowlist:
        return self._allow

    def from_url(self, field: str, url: str) -> ImageFacts:
        body = self._fetch(field, url)
        facts = _facts(field, body)
        check_image(field, facts, ImageSource.URL, self._limits)
        return facts

    def from_base64(self, field: str, data: str) -> ImageFacts:
        if len(data) > self._limits.base64_max_bytes * 4 // 3 + 4:
            raise InvalidInput(field, f"at most {self._limits.base64_max_bytes} bytes of image as base64")
        try:
            body = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(field, "not valid base64") from None
        facts = _facts(field, body)
        check_image(field, facts, ImageSource.BASE64, self._limits)
        return facts

    def from_bytes(self, field: str, body: bytes) -> ImageFacts:
        """An image we already hold (a direct upload): the URL rules for size and pixels."""
        facts = _facts(field, body)
        check_image(field, facts, ImageSource.URL, self._limits)
        return facts

    def check_target(self, field: str, url: str) -> None:
        check_public_url(field, url, self._allow, what="images")

    def _fetch(self, field: str, url: str) -> bytes:
        cap = self._limits.url_max_bytes
        for _ in range(MAX_REDIRECTS + 1):
            self.check_target(field, url)
            try:
                with self._client.stream("GET", url, follow_redirects=False) as resp:
                    if resp.is_redirect and "location" in resp.headers:
                        url = str(resp.url.join(resp.headers["location"]))
                        continue
                    if resp.status_code != 200:
                        raise InvalidInput(field, f"fetching the image answered HTTP {resp.status_code}")
                    return _read_capped(field, resp.iter_bytes(), cap)
            except httpx.HTTPError as exc:
                raise InvalidInput(field, f"the image could not be fetched ({type(exc).__name__})") from None
        raise InvalidInput(field, f"more than {MAX_REDIRECTS} redirects")


def check_public_url(field: str, url: str, allow: Allowlist, *, what: str) -> None:
    """Refuse URLs we must not reach: unusable, not http(s), or resolving to a non-public address
    (unless allow-listed). Input images and webhook targets go through this one check."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:  # NUL, CR/LF, a host that is no host (octal IPv4, broken IPv6)
        raise InvalidInput(field, f"not a usable URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(field, "must be an http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    for address in _resolve(field, parsed.host, port):
        if not is_public(address) and not allow.allows(parsed.host, port, address):
            raise InvalidInput(field, f"{parsed.host} is not a public address; {what} must be on the internet")


def _read_capped(field: str, chunks: Iterable[bytes], cap: int) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise InvalidInput(field, f"the image is over {cap} bytes; at most {cap} by url")
    return bytes(body)


def _resolve(field: str, host: str, port: int) -> list[IP]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):  # ValueError: a NUL, or a name IDNA cannot encode
        raise InvalidInput(field, f"{host!r} does not resolve") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _facts(field: str, body: bytes) -> ImageFacts:
    try:
        with Image.open(io.BytesIO(body)) as image:
            return ImageFacts(len(body), image.width, image.height, image.format or "")
    except (UnidentifiedImageError, OSError):
        raise InvalidInput(field, "not an image (PNG, JPEG or WEBP)") from None
