"""Where genq may connect for a URL it was handed: an input image, a webhook target, a vendor output.

A URL's host is resolved once; every answer must be a public address (or allow-listed), and the
request is sent to the first answer — the address that was checked, never a second resolution, so
a name whose DNS answer changes after the check (DNS rebinding) cannot redirect us. The pinned
request keeps the name in its Host header and as the TLS server name (`sni_hostname`), so the
certificate is verified for the name. It asks for `Connection: close`: the connection pool knows
connections by address, and a TLS connection verified for one name must not carry another's.

Public means global by IANA's special-purpose registries. An IPv6 address that embeds an IPv4 one
(mapped, compatible, NAT64, 6to4, Teredo) is judged by that IPv4 address, and the ranges Python's
`is_global` lets through (192.0.0.0/24, 192.88.99.0/24, multicast, ...) are refused too.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio.to_thread
import httpx

from domain.errors import DomainError, InvalidInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[IP]]  # (host, port) -> every address the name has

NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
                "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
                "224.0.0.0/4", "240.0.0.0/4")
)  # fmt: skip
NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in ("::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20",
                "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8")
)  # fmt: skip
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+", re.IGNORECASE)


class AddressRefused(InvalidInput):
    """The URL leads to an address we must not reach: 422 `invalid_input`, `reason` says which."""

    def __init__(self, field: str, message: str) -> None:
        DomainError.__init__(self, message, field=field, reason="not_public_address")
        self.field = field


class Unresolvable(InvalidInput):
    """The name has no address (now): to a client sending it, a connection failure."""


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


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses a packet to `address` ends up at (Teredo: its server and its client)."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in NAT64 or int(address) >> 32 == 0:  # NAT64, or IPv4-compatible (::a.b.c.d)
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:  # the client is the last 32 bits XOR 0xffffffff
        return address.teredo
    return ()


def is_public(address: IP) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded:
            return all(is_public(v4) for v4 in embedded)
        return address.is_global and not any(address in net for net in NOT_PUBLIC_V6)
    return address.is_global and not any(address in net for net in NOT_PUBLIC_V4)


def system_resolver(host: str, port: int) -> list[IP]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """Where a checked URL goes: the name (Host, TLS), the port, and the one address to connect to."""

    host: str
    port: int
    address: IP
    literal: bool  # the URL names the address itself


@dataclass(frozen=True)
class NetGuard:
    allow: Allowlist = Allowlist()
    what: str = "targets"  # for messages: "images must be on the internet"
    resolve: Resolver = system_resolver

    def target(self, field: str, url: str | httpx.URL) -> Target:
        host, port, literal = _parse(field, url)
        answers = [literal] if literal is not None else self._lookup(field, host, port)
        return self._checked(field, host, port, answers, literal=literal is not None)

    async def atarget(self, field: str, url: str | httpx.URL) -> Target:
        host, port, literal = _parse(field, url)
        answers = [literal] if literal is not None else await anyio.to_thread.run_sync(self._lookup, field, host, port)
        return self._checked(field, host, port, answers, literal=literal is not None)

    def _lookup(self, field: str, host: str, port: int) -> Sequence[IP]:
        try:
            answers = self.resolve(host, port)
        except (OSError, UnicodeError, ValueError):  # ValueError: a name IDNA cannot encode
            answers = ()
        if not answers:
            raise Unresolvable(field, f"{host!r} does not resolve")
        return answers

    def _checked(self, field: str, host: str, port: int, answers: Sequence[IP], *, literal: bool) -> Target:
        for address in answers:
            if not is_public(address) and not self.allow.allows(host, port, address):
                raise AddressRefused(field, f"{host} is not a public address; {self.what} must be on the internet")
        return Target(host, port, answers[0], literal)


def aimed(request: httpx.Request, target: Target) -> httpx.Request:
    """`request`, sent to the checked address; Host and the TLS server name stay the URL's name."""
    headers = request.headers.copy()
    headers["Connection"] = "close"
    if target.literal:
        return httpx.Request(request.method, request.url, headers=headers, stream=request.stream,
                             extensions=request.extensions)  # fmt: skip
    url = request.url.copy_with(host=str(target.address))
    extensions = {**request.extensions, "sni_hostname": target.host}
    return httpx.Request(request.method, url, headers=headers, stream=request.stream, extensions=extensions)


class GuardTransport(httpx.BaseTransport):
    """Checks and pins every request, each redirect hop included, before `inner` sends it.

    A refusal raises AddressRefused (an InvalidInput naming `field`); a name with no address is an
    httpx.ConnectError, as it would be without the guard.
    """

    def __init__(self, guard: NetGuard, inner: httpx.BaseTransport | None = None, *, field: str = "url") -> None:
        self._guard, self._inner, self._field = guard, inner or httpx.HTTPTransport(), field

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            target = self._guard.target(self._field, request.url)
        except Unresolvable as exc:
            raise httpx.ConnectError(exc.message, request=request) from None
        return self._inner.handle_request(aimed(request, target))

    def close(self) -> None:
        self._inner.close()


class AsyncGuardTransport(httpx.AsyncBaseTransport):
    """GuardTransport for httpx.AsyncClient: the name is resolved in a worker thread."""

    def __init__(self, guard: NetGuard, inner: httpx.AsyncBaseTransport | None = None, *, field: str = "url") -> None:
        self._guard, self._inner, self._field = guard, inner or httpx.AsyncHTTPTransport(), field

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            target = await self._guard.atarget(self._field, request.url)
        except Unresolvable as exc:
            raise httpx.ConnectError(exc.message, request=request) from None
        return await self._inner.handle_async_request(aimed(request, target))

    async def aclose(self) -> None:
        await self._inner.aclose()


def _parse(field: str, url: str | httpx.URL) -> tuple[str, int, IP | None]:
    """(host as sent on the wire, port, the address if the host is one); unusable URLs refused."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL as exc:  # NUL, CR/LF, an octal IPv4 with a leading zero, broken IPv6
        raise InvalidInput(field, f"not a usable URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(field, "must be an http(s) URL")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded; an IPv6 address without brackets
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        return host, port, ipaddress.ip_address(host)
    except ValueError:
        pass
    if NUMERIC_LABEL.fullmatch(host.rstrip(".").rpartition(".")[2]):  # 0x7f.1, 2130706433, 127.1, 1.2.3.4.
        raise InvalidInput(field, f"not a usable URL: {host!r} is neither a name nor a dotted-quad address")
    return host, port, None
