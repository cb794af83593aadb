"""Downloads of vendor outputs: resumed with Range after a cut, capped in size, retried or not."""

from __future__ import annotations

import httpx
import pytest

from infra.fetch import FetchError, fetch

BODY = bytes(range(256)) * 400  # 100 KiB


class CutOnce(httpx.BaseTransport):
    """Serves BODY honouring Range; the first response dies after `cut` bytes (a reset mid-stream)."""

    def __init__(self, cut: int) -> None:
        self.cut, self.ranges = cut, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        start = int(request.headers["range"].split("=")[1].rstrip("-")) if "range" in request.headers else 0
        self.ranges.append(start)
        status = 206 if start else 200
        first = len(self.ranges) == 1
        return httpx.Response(
            status, headers={"content-type": "image/png"}, stream=_Stream(BODY[start:], self.cut if first else None)
        )


class _Stream(httpx.SyncByteStream):
    def __init__(self, data: bytes, cut: int | None) -> None:
        self.data, self.cut = data, cut

    def __iter__(self):  # type: ignore[no-untyped-def]
        if self.cut is None:
            yield self.data
            return
        yield self.data[: self.cut]
        raise httpx.ReadError("connection reset by peer")


def test_a_download_cut_mid_stream_resumes_where_it_stopped() -> None:
    transport = CutOnce(cut=30_000)

    fetched = fetch(httpx.Client(transport=transport), "https://vendor.test/out/0.png", max_bytes=1 << 20)

    assert fetched.body.read() == BODY and fetched.size == len(BODY)
    assert transport.ranges == [0, 30_000]
    assert fetched.content_type == "image/png"


def test_a_file_over_the_cap_is_refused_and_not_retried() -> None:
    transport = CutOnce(cut=len(BODY) + 1)

    with pytest.raises(FetchError) as caught:
        fetch(httpx.Client(transport=transport), "https://vendor.test/out/0.png", max_bytes=10_000)

    assert caught.value.code == "too_large" and not caught.value.retryable
    assert transport.ranges == [0]


@pytest.mark.parametrize(("status", "retryable", "calls"), [(503, True, 3), (404, False, 1), (403, False, 1)])
def test_server_errors_are_retried_and_client_errors_are_not(status: int, retryable: bool, calls: int) -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(status)

    with pytest.raises(FetchError) as caught:
        fetch(
            httpx.Client(transport=httpx.MockTransport(handler)),
            "https://vendor.test/x?Signature=s3cr3t",
            max_bytes=100,
        )

    assert caught.value.code == f"http_{status}" and caught.value.retryable is retryable
    assert len(seen) == calls
    assert "s3cr3t" not in str(caught.value)
