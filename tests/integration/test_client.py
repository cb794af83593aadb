"""The Python client (client/) against the real API: its models are the OpenAPI document's, and a
fresh venv with only `uv pip install ./client` submits, follows and downloads jobs from `genq run`.

The venv is made offline from uv's cache, which `make install` fills: first the client's locked
dependencies (exported from uv.lock), then the client itself, built by hatchling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from genq_client import Job, JobError, JobPage, QueuePlace, Result, Timings
from litestar import Litestar
from litestar.testing import TestClient

from tests.integration.test_genq_run import Stack, _run_stack

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A user of the package: the sync client with a transport that records what it asked, then the
# async one. Prints what the test checks, as JSON.
SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx
    from genq_client import AsyncClient, Client

    image_url, folder = sys.argv[1], sys.argv[2]
    asked, updates = [], []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request):
            asked.append(f"{request.method} {request.url.path}")
            return super().handle_request(request)

    with Client(transport=Recording()) as genq:
        job = genq.submit_and_wait("basic_clean", {"image_url": image_url}, timeout=90,
                                   on_update=lambda j: updates.append(j.status))
        paths = genq.download(job, folder)

    async def again():
        async with AsyncClient() as genq:
            return await genq.submit_and_wait("basic_clean", {"image_url": image_url}, external_id="async-1",
                                              timeout=90)

    other = asyncio.run(again())
    print(json.dumps({"job": job.to_dict(), "paths": [str(p) for p in paths], "updates": updates,
                      "asked": asked, "async": other.to_dict()}))
    """
)


def test_the_clients_models_have_the_fields_of_the_apis_schemas(api: TestClient[Litestar]) -> None:
    """Each client class against the schema the API publishes for it: the same fields, the same
    required ones. A field added to (or dropped from) JobOut fails here until the client follows."""
    document = api.get("/schema/openapi.json").json()
    job_out = _resolve(document, _answer_schema(document, "/v1/jobs/{job_id}", "get"))
    page_out = _resolve(document, _answer_schema(document, "/v1/jobs", "get"))
    parts = {name: _resolve(document, _ref_in(job_out["properties"][name])) for name in ("error", "queue", "timings")}
    parts["results"] = _resolve(document, _ref_in(job_out["properties"]["results"]))

    pairs = [(Job, job_out), (JobPage, page_out), (JobError, parts["error"]), (Result, parts["results"])]
    pairs += [(QueuePlace, parts["queue"]), (Timings, parts["timings"])]
    for cls, schema in pairs:
        assert _fields(cls) == set(schema["properties"]), cls.__name__
        assert _required(cls) == set(schema.get("required", [])), cls.__name__


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the client package alone (and httpx), installed as a user would."""
    home = tmp_path_factory.mktemp("client-venv")
    venv, pylock = home / "venv", home / "pylock.toml"
    _uv("venv", "--python", sys.executable, str(venv))
    locked = ("--frozen", "--package", "genq-client", "--no-emit-workspace")  # httpx and its own, pinned by uv.lock
    _uv("export", *locked, "--format", "pylock.toml", "-o", str(pylock))
    python = str(venv / "bin" / "python")
    _uv("pip", "install", "--offline", "--preview-features", "pylock", "--python", python, "-r", str(pylock))
    _uv("pip", "install", "--offline", "--python", python, str(ROOT / "client"))
    return venv


@pytest.fixture(scope="module")
def client_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One `genq run` (embedded services, simulators) for this module's tests: it takes a while to
    start. Stopped with Ctrl-C, as a person would; killed if that did not do it."""
    stacks = _run_stack(tmp_path_factory.mktemp("client-stack"), external=False)
    stack = next(stacks)
    try:
        yield stack
    finally:
        stack.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.proc.wait(timeout=60)
        next(stacks, None)


def test_a_fresh_install_of_the_client_drives_genq_run(client_venv: Path, client_stack: Stack, tmp_path: Path) -> None:
    env = _user_env(client_stack)
    image_url = client_stack.lines["sample image"]

    done = _run([str(client_venv / "bin" / "python"), "-c", SCRIPT, image_url, str(tmp_path / "out")], env)

    report = json.loads(done.stdout)
    job = report["job"]
    assert job["status"] == "succeeded" and report["async"]["status"] == "succeeded", report
    assert report["async"]["external_id"] == "async-1"
    assert report["updates"][-1] == "succeeded"
    assert f"GET /v1/jobs/{job['id']}/events" in report["asked"]  # followed the stream ...
    assert f"GET /v1/jobs/{job['id']}" not in report["asked"]  # ... without falling back to polling
    paths = [Path(p) for p in report["paths"]]
    assert [p.name for p in paths] == [f"{job['id']}-{i}.png" for i in range(len(job["results"]))] != []
    assert [p.stat().st_size for p in paths] == [r["size"] for r in job["results"]]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)


def test_the_installed_cli_submits_and_waits_for_a_job(client_venv: Path, client_stack: Stack) -> None:
    env = _user_env(client_stack)
    argv = [str(client_venv / "bin" / "genq-client"), "submit", "basic_clean"]
    argv += ["--image-url", client_stack.lines["sample image"], "--external-id", "cli-1", "--wait", "--timeout", "90"]

    done = _run(argv, env)

    job = json.loads(done.stdout)
    assert (job["status"], job["external_id"], len(job["results"])) == ("succeeded", "cli-1", 1)
    assert f"{job['id']}  succeeded  1 result(s)" in done.stderr.splitlines()


def _user_env(stack: Stack) -> dict[str, str]:
    """A user with credits, as the client's environment: nothing of this project's venv leaks in."""
    phone = f"136{uuid.uuid4().int % 10**8:08d}"
    user = json.loads(stack.genq("users", "create", "--phone", phone, "--credits", "10"))
    return {"PATH": os.environ["PATH"], "GENQ_API_URL": stack.api, "GENQ_API_KEY": user["api_key"]}


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done


def _uv(*args: str) -> None:
    """The uv `make install` installed, with the environment it runs in there."""
    env = os.environ | {"PYTHONPATH": str(ROOT / ".tools")}
    done = subprocess.run(
        [str(ROOT / ".tools" / "bin" / "uv"), *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"uv {' '.join(args)}: {done.stderr[-3000:]}"


def _fields(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"extra"}


def _required(cls: type[Any]) -> set[str]:
    missing = dataclasses.MISSING
    return {f.name for f in dataclasses.fields(cls) if f.default is missing and f.default_factory is missing}


def _answer_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    responses = document["paths"][path][method]["responses"]
    ok = next(answer for status, answer in responses.items() if status.startswith("2"))
    schema: dict[str, Any] = ok["content"]["application/json"]["schema"]
    return schema


def _ref_in(schema: dict[str, Any]) -> dict[str, Any]:
    """The `$ref` inside a property's schema (itself, an `oneOf` with null, or a list's items)."""
    if "$ref" in schema:
        return schema
    for inner in [*schema.get("oneOf", []), *schema.get("anyOf", []), schema.get("items", {})]:
        if "$ref" in inner or "items" in inner:
            return _ref_in(inner)
    raise AssertionError(f"no $ref in {schema}")


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref: str = schema["$ref"]
    found: dict[str, Any] = document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return found
