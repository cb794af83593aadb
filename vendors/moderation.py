"""One contract for every content-moderation platform (SPEC §5, seed 002: unified async).

Platforms differ: some answer in the call (WeChat `msgSecCheck` for text, every Douyin check),
some push the verdict later (WeChat `mediaCheckAsync` for images). An adapter hides that:

- `submit()` never waits for a later answer. It returns a `Submission`: the platform's task id,
  and the verdict too when the platform happened to give it in the call. genq delivers an in-call
  verdict through the very path a pushed one takes, so the rest of genq sees one kind of event.
- `parse_push()` verifies a push (the platform's signature scheme) and turns it into
  `(platform_task_id, Verdict)` events; a forged push raises `PushRejected`. A check the platform
  could not carry out is an event too, with the decision `failed`: genq submits the item again.
- `query()` pulls a verdict where the platform offers a query; `None` means "nothing yet, or no
  query API": genq's fallback then submits the item again.

Adding a platform means adding an adapter (and its simulator), nothing else. Errors follow
`vendors.base`: `VendorUnavailable` (busy, network: try later), `VendorRejected` (bad request,
config). Access tokens live in a `TokenCache` shared by every process (genq keeps them in Redis).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

import httpx

from vendors.base import MessageRejected, VendorUnavailable, transport_error

TOKEN_MARGIN_S: Final = 300.0
"""A shared access token is dropped this long before the platform's `expires_in` runs out."""


class ItemKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"


@dataclass(frozen=True)
class CheckItem:
    kind: ItemKind
    content: str  # the text itself, or a public http(s) URL of the image


class Decision(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    REJECT = "reject"
    REVIEW = "review"  # the platform is unsure: genq's AUDIT_LOW_CONFIDENCE decides
    FAILED = "failed"  # the platform could not check the item (e.g. could not download it): no verdict on it


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    confidence: float  # 0..1: how sure the platform is of `decision`
    labels: tuple[str, ...] = ()  # platform labels that fired, e.g. ("20002",) or ("porn",)
    raw: Mapping[str, object] = field(default_factory=dict)  # the platform's answer, for the audit row


@dataclass(frozen=True)
class Submission:
    platform_task_id: str
    verdict: Verdict | None = None  # set when the platform answered in the call


class PushRejected(MessageRejected):
    """A push that must not be trusted; `reason` is stable (bad_signature, stale, malformed, ...)."""

    what = "moderation push"


@dataclass(frozen=True)
class PushRequest:
    """An incoming push as the HTTP layer saw it."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class PushAnswer:
    """What to answer the platform (it expects exact bodies, e.g. WeChat's `success`)."""

    status: int
    body: str
    content_type: str = "text/plain"


class TokenCache(Protocol):
    """Where platform access tokens are shared between processes, with their lifetime."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, token: str, ttl_s: float) -> None: ...

    def delete(self, key: str) -> None: ...


class ModerationPlatform(Protocol):
    name: str

    def submit(self, item: CheckItem, *, reference: str) -> Submission:
        """Start a check; `reference` is genq's audit id (for logs; platforms may ignore it)."""
        ...

    def query(self, platform_task_id: str) -> Verdict | None: ...

    def parse_push(self, push: PushRequest) -> tuple[list[tuple[str, Verdict]], PushAnswer]:
        """Verify and read a push: its events, and what to answer. URL-verification handshakes
        (WeChat's GET with echostr) come back as no events and the answer the platform wants."""
        ...


class MemoryTokenCache:
    """A process-local TokenCache, for tests and single-process use."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._tokens.get(key)

    def set(self, key: str, token: str, ttl_s: float) -> None:
        self._tokens[key] = token

    def delete(self, key: str) -> None:
        self._tokens.pop(key, None)


class AppClient:
    """What a platform adapter shares: one app's credentials, its access tokens in the shared
    `TokenCache` (under `<platform>:access_token:<appid>`), and both scrubbed from every text.

    `_exchange` is one HTTP call: no answer, a 429 or a 5xx is `VendorUnavailable`; any other answer
    is the adapter's to read. Exceptions are not chained: httpx's carry the request, whose URL or body
    may hold the credentials.
    """

    name: str

    def __init__(
        self, http: httpx.Client, *, appid: str, secret: str, tokens: TokenCache, clock: Callable[[], float] = time.time
    ) -> None:
        self._http = http  # base_url and timeouts come from the caller, never defaults
        self._appid = appid
        self._secret = secret
        self._tokens = tokens
        self._clock = clock
        self._token_key = f"{self.name}:access_token:{appid}"
        self._seen_tokens: deque[str] = deque(maxlen=8)  # scrubbed from every exception text

    def _cached_token(self) -> str | None:
        cached = self._tokens.get(self._token_key)
        if cached:
            self._remember(cached)
        return cached or None

    def _keep_token(self, token: str, expires_in: float) -> None:
        """Share a fresh token for `expires_in` minus `TOKEN_MARGIN_S` (half its life when that is short)."""
        self._remember(token)
        self._tokens.set(self._token_key, token, max(expires_in - TOKEN_MARGIN_S, expires_in / 2))

    def _remember(self, token: str) -> None:
        if token not in self._seen_tokens:
            self._seen_tokens.append(token)

    def _exchange(self, method: str, path: str, **request: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **request)
        except httpx.TransportError as exc:  # no answer: timeout, reset, DNS
            raise transport_error(self.name, exc, creates=False, scrub=self._scrub) from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise VendorUnavailable(self.name, f"http_{resp.status_code}")
        return resp

    def _scrub(self, text: str) -> str:
        for secret in (self._secret, *self._seen_tokens):
            text = text.replace(secret, self._shown(secret))
        return text

    def _shown(self, secret: str) -> str:
        """How a credential appears in a scrubbed text."""
        return "****"
