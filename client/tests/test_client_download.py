"""`download` streams each result to `{job_id}-{i}.{ext}`, with a progress line on stderr, sends no
API key to the signed URLs, and leaves no half-written file when a download breaks off."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_fakes import JOB_ID, Clock, FakeApi, answer, api_error, job_json, succeeded_json
from genq_client import ApiConnectionError, AsyncClient, Client, GenqError, Job
from genq_client.files import result_name

PNG, MP4 = b"\x89PNG\r\n\x1a\n" + b"p" * 5000, b"\x00\x00\x00\x18ftypmp42" + b"m" * 7000
RESULTS = (
    ("https://s3.test/results/0.png?X-Amz-Signature=a", "image/png", len(PNG)),
    ("https://s3.test/results/1.mp4?X-Amz-Signature=b", "video/mp4", len(MP4)),
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def files(api: FakeApi) -> None:
    api.on("GET", "/results/0.png", lambda _: httpx.Response(200, content=PNG, headers={"content-type": "image/png"}))
    api.on("GET", "/results/1.mp4", lambda _: httpx.Response(200, content=MP4, headers={"content-type": "video/mp4"}))


def test_each_result_is_saved_under_the_job_id_with_its_type_s_extension(
    client: Client, api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files(api)

    paths = client.download(Job.from_json(succeeded_json(*RESULTS)), tmp_path / "out")

    assert paths == [tmp_path / "out" / f"{JOB_ID}-0.png", tmp_path / "out" / f"{JOB_ID}-1.mp4"]
    assert [p.read_bytes() for p in paths] == [PNG, MP4]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert all("Authorization" not in r.headers for r in api.requests)
    assert capsys.readouterr().err.splitlines() == [f"{JOB_ID}-0.png  5.0 kB", f"{JOB_ID}-1.mp4  7.0 kB"]


def test_on_a_terminal_the_progress_line_is_rewritten_as_bytes_arrive(
    client: Client, api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files(api)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    client.download(Job.from_json(succeeded_json(RESULTS[0])), tmp_path)

    shown = terminal.getvalue().split("\r\033[K")
    assert shown[-2] == f"{JOB_ID}-0.png  5.0 kB / 5.0 kB  100%"
    assert shown[-1] == f"{JOB_ID}-0.png  5.0 kB\n"


def test_without_progress_nothing_is_written_to_stderr(
    client: Client, api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files(api)

    client.download(Job.from_json(succeeded_json(*RESULTS)), tmp_path, progress=False)

    assert capsys.readouterr().err == ""


def test_a_job_id_is_looked_up_first(client: Client, api: FakeApi, tmp_path: Path) -> None:
    files(api)
    api.on("GET", f"/v1/jobs/{JOB_ID}", answer(200, succeeded_json(*RESULTS)))

    paths = client.download(JOB_ID, tmp_path, progress=False)

    assert [p.name for p in paths] == [f"{JOB_ID}-0.png", f"{JOB_ID}-1.mp4"]


def test_a_result_url_answering_503_is_tried_again(client: Client, api: FakeApi, clock: Clock, tmp_path: Path) -> None:
    api.on("GET", "/results/0.png", api_error(503, "slow_down"), lambda _: httpx.Response(200, content=PNG))

    (path,) = client.download(Job.from_json(succeeded_json(RESULTS[0])), tmp_path, progress=False)

    assert path.read_bytes() == PNG and clock.slept == [0.5]


def test_a_download_that_breaks_off_leaves_no_file(client: Client, api: FakeApi, tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield PNG[:100]
        raise httpx.ReadError("connection reset")

    api.on("GET", "/results/0.png", lambda _: httpx.Response(200, content=broken()))

    with pytest.raises(ApiConnectionError):
        client.download(Job.from_json(succeeded_json(RESULTS[0])), tmp_path, progress=False)

    assert list(tmp_path.iterdir()) == []


def test_a_job_without_results_has_nothing_to_download(client: Client, tmp_path: Path) -> None:
    with pytest.raises(GenqError, match="no results"):
        client.download(Job.from_json(job_json("failed")), tmp_path)


def test_the_async_client_downloads_too(async_client: AsyncClient, api: FakeApi, tmp_path: Path) -> None:
    files(api)

    async def fetch() -> list[Path]:
        async with async_client as genq:
            return await genq.download(Job.from_json(succeeded_json(*RESULTS)), tmp_path, progress=False)

    assert [p.read_bytes() for p in asyncio.run(fetch())] == [PNG, MP4]


@pytest.mark.parametrize(
    ("content_type", "name"),
    [
        ("image/png", "j-0.png"),
        ("image/jpeg", "j-0.jpg"),
        ("model/gltf-binary", "j-0.glb"),
        ("application/zip", "j-0.zip"),
        ("video/mp4; codecs=avc1", "j-0.mp4"),
        ("application/x-unheard-of", "j-0.bin"),
    ],
)
def test_file_names_take_their_extension_from_the_content_type(content_type: str, name: str) -> None:
    assert result_name("j", 0, content_type) == name


def test_a_job_id_cannot_name_another_folder() -> None:
    assert result_name("../../etc/x", 1, "image/png") == "______etc_x-1.png"
