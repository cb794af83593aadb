"""`genq-client`: jobs as JSON on stdout, live status on stderr; exit 0 succeeded, 1 the job did
not succeed, 2 a usage or API error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from client_fakes import JOB_ID, FakeApi, answer, api_error, event, job_json, stream, succeeded_json
from genq_client import Client, Job
from genq_client.cli import StatusLine, main

JOB = f"/v1/jobs/{JOB_ID}"
EVENTS = f"{JOB}/events"
QUEUED = job_json("queued", queue={"reason": "vendor_slots", "position": 2})


def test_submit_builds_the_input_from_options_pairs_and_json(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/v1/jobs", answer(202, QUEUED))
    argv = ["submit", "video", "--model", "sora-2", "--resolution", "720p", "--duration", "10"]
    argv += ["--prompt", "a calm sea", "--image-url", "https://example.com/a.png", "--input", "seed:=7"]
    argv += ["--input", "note=a=b", "--input-json", '{"prompt": "overridden", "extra": [1]}', "--external-id", "o-1"]

    code = main(argv, client=client)

    body = json.loads(api.requests[0].read())
    assert code == 0
    assert body == {
        "kind": "video",
        "input": {
            "model": "sora-2",
            "resolution": "720p",
            "duration": 10,
            "prompt": "a calm sea",
            "image_url": "https://example.com/a.png",
            "seed": 7,
            "note": "a=b",
            "extra": [1],
        },
        "external_id": "o-1",
    }
    assert json.loads(capsys.readouterr().out)["status"] == "queued"


def test_submit_wait_shows_the_status_live_and_prints_the_final_job(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/v1/jobs", answer(202, QUEUED))
    api.on(
        "GET",
        EVENTS,
        stream(
            event("queued", QUEUED, 1),
            event("queue", {"reason": "vendor_slots", "position": 1}),
            event("processing", job_json("processing"), 2),
            event("succeeded", succeeded_json(), 3),
        ),
    )

    code = main(["submit", "basic_clean", "--image-url", "https://example.com/a.png", "--wait"], client=client)

    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["status"] == "succeeded"
    assert err.splitlines() == [
        f"{JOB_ID}  queued  position 2 in line (vendor_slots)",
        f"{JOB_ID}  queued  position 1 in line (vendor_slots)",
        f"{JOB_ID}  processing",
        f"{JOB_ID}  succeeded  1 result(s)",
    ]


@pytest.mark.parametrize("status", ["failed", "timed_out", "cancelled", "audit_failed"])
def test_waiting_for_a_job_that_did_not_succeed_exits_1(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str], status: str
) -> None:
    ended = job_json(status, error={"code": "vendor_rejected", "message": "refused"})
    api.on("GET", EVENTS, stream(event(status, ended, 1)))

    code = main(["wait", JOB_ID], client=client)

    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["status"] == status
    assert "vendor_rejected: refused" in err


def test_a_wait_that_runs_out_exits_1_with_the_last_known_job(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", EVENTS, api_error(503, "unavailable"))
    api.on("GET", JOB, answer(200, QUEUED))

    code = main(["wait", JOB_ID, "--timeout", "5"], client=client)

    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["status"] == "queued"
    assert "has not ended yet" in err


def test_an_api_error_exits_2_with_its_message(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/v1/jobs", api_error(402, "insufficient_credits", "the job costs 1, you have 0"))

    code = main(["submit", "basic_clean", "--image-url", "https://example.com/a.png", "--wait"], client=client)

    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "402 insufficient_credits: the job costs 1, you have 0" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["submit"],
        ["submit", "video", "--input", "no-equals-sign"],
        ["submit", "video", "--input", "duration:=ten"],
        ["submit", "video", "--input-json", "[1, 2]"],
        ["submit", "video", "--duration", "ten"],
        ["frobnicate"],
    ],
)
def test_a_usage_error_exits_2_and_sends_nothing(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code = main(argv, client=client)

    assert code == 2 and api.requests == []
    assert capsys.readouterr().err


def test_without_an_api_key_it_exits_2_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GENQ_API_KEY", raising=False)

    code = main(["get", JOB_ID])

    assert code == 2
    assert "GENQ_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "method", "path"), [("get", "GET", JOB), ("cancel", "POST", f"{JOB}/cancel")])
def test_get_and_cancel_print_the_job(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str], command: str, method: str, path: str
) -> None:
    api.on(method, path, answer(200, job_json("cancelled")))

    code = main([command, JOB_ID], client=client)

    assert code == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"


def test_retry_prints_the_new_job(client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("POST", f"{JOB}/retry", answer(202, job_json(id="01JQ5S1N2Q8W6F7G8H9J0K1M2Z", retry_of=JOB_ID)))

    code = main(["retry", JOB_ID], client=client)

    assert code == 0
    assert json.loads(capsys.readouterr().out)["retry_of"] == JOB_ID


def test_download_saves_the_results_and_prints_their_paths(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.on("GET", JOB, answer(200, succeeded_json(("https://s3.test/r/0.png", "image/png", 4))))
    api.on("GET", "/r/0.png", lambda _: httpx.Response(200, content=b"\x89PNG"))

    code = main(["download", JOB_ID, str(tmp_path)], client=client)

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / f"{JOB_ID}-0.png")]
    assert (tmp_path / f"{JOB_ID}-0.png").read_bytes() == b"\x89PNG"


def test_submit_download_waits_then_saves(
    client: Client, api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    done = succeeded_json(("https://s3.test/r/0.png", "image/png", 4))
    api.on("POST", "/v1/jobs", answer(202, QUEUED))
    api.on("GET", EVENTS, stream(event("succeeded", done, 1)))
    api.on("GET", "/r/0.png", lambda _: httpx.Response(200, content=b"\x89PNG"))

    code = main(
        ["submit", "basic_clean", "--image-url", "https://example.com/a.png", "--download", str(tmp_path)],
        client=client,
    )

    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    assert err.splitlines()[-1] == f"{JOB_ID}-0.png  4 B"
    assert (tmp_path / f"{JOB_ID}-0.png").exists()


def test_on_a_terminal_the_status_is_one_line_rewritten_in_place() -> None:
    terminal = Terminal()
    line = StatusLine(terminal)

    line.show(Job.from_json(QUEUED))
    line.show(Job.from_json(succeeded_json()))
    line.close()

    assert terminal.getvalue() == (
        f"\r\033[K{JOB_ID}  queued  position 2 in line (vendor_slots)\r\033[K{JOB_ID}  succeeded  1 result(s)\n"
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True
