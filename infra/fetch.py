"""Streamed downloads of vendor outputs: size-capped, retried, resumed with Range where allowed.

The body goes to a spooled temporary file (memory up to 8 MiB, disk beyond), so a large video
never sits whole in memory. The workers' client checks and pins every hop (infra/netguard.py,
`GuardTransport`): a URL, or a redirect, to an address we must not reach is `not_public_address`,
and is not retried.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO

import httpx

from domain.errors import InvalidInput
from infra.netguard import AddressRefused

SPOOL_BYTES = 8 * 1024 * 1024


class FetchError(Exception):
    """The file could not be fetched; `retryable` says whether trying later may help."""

    def __init__(self, code: str, detail: str = "", *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class Fetched:
    body: IO[bytes]  # positioned at 0; the caller closes it
    size: int
    content_type: str


def fetch(client: httpx.Client, url: str, *, max_bytes: int, attempts: int = 3) -> Fetched:
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed to caller
    content_type = ""
    last: FetchError | None = None
    for _ in range(attempts):
        try:
            content_type = _stream_into(client, url, out, max_bytes=max_bytes) or content_type
            size = _size(out)
            out.seek(0)
            return Fetched(out, size, content_type.split(";")[0].strip())
        except FetchError as exc:
            if not exc.retryable:
                out.close()
                raise
            last = exc
    out.close()
    assert last is not None
    raise last


def _stream_into(client: httpx.Client, url: str, out: IO[bytes], *, max_bytes: int) -> str:
    have = _size(out)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise FetchError(f"http_{resp.status_code}", url_host(url), retryable=True)
            if resp.status_code not in (200, 206):
                raise FetchError(f"http_{resp.status_code}", url_host(url))
            if resp.status_code == 200 and have:  # no Range support: start again
                out.seek(0)
                out.truncate()
            declared = int(resp.headers.get("content-length") or 0)
            if declared and _size(out) + declared > max_bytes:
                raise FetchError("too_large", f"{declared} bytes")
            for chunk in resp.iter_bytes():
                out.write(chunk)
                if _size(out) > max_bytes:
                    raise FetchError("too_large", f"over {max_bytes} bytes")
            return str(resp.headers.get("content-type", ""))
    except httpx.TransportError as exc:
        raise FetchError("transport", repr(exc), retryable=True) from exc
    except AddressRefused as exc:
        raise FetchError("not_public_address", exc.message) from exc
    except InvalidInput as exc:  # a redirect to a URL that is no http(s) URL
        raise FetchError("unusable_url", exc.message) from exc


def _size(out: IO[bytes]) -> int:
    out.seek(0, 2)
    return out.tell()


def url_host(url: str) -> str:
    """For messages: the host only, never the signed query string."""
    return httpx.URL(url).host
