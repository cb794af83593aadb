"""The README's quick start, run as written against `genq run` (what `make run` starts).

The commands are read from README.md's "Quick start" section, so this test breaks when the README
drifts from the code: its banner is compared with the one `genq run` prints, and every shell
command (the user, the jobs, the phone login and the plan, the simulator knobs) is run with bash,
the README's ports moved to the stack's (taken from the two banners) and each placeholder (`gq_…`,
`<id>`, `<code>`, `<access_token>`) filled from what an earlier command printed.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_genq_run import Stack, _run_stack
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PLACEHOLDER = re.compile(r"<(\w+)>|gq_…")


def quick_start() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Quick start")
    return readme[start : readme.index("\n## ", start + 1)]


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(quick_start()) if kind == lang]


def block(lang: str, containing: str) -> str:
    [found] = [b for b in blocks(lang) if containing in b]
    return found


def commands(text: str) -> list[str]:
    """The block's shell commands: continuation lines joined, comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def banner(text: str) -> dict[str, str]:
    return {name.strip(): value.strip() for name, sep, value in (ln.partition(": ") for ln in text.splitlines()) if sep}


class Shell:
    """Runs README commands one by one against the stack, as a reader at a terminal would."""

    def __init__(self, stack: Stack, moves: dict[str, str]) -> None:
        self.stack, self.moves = stack, moves
        self.env = dict(stack.env)
        self.printed: list[Any] = []  # each command's output, parsed as JSON where it is JSON

    def fill(self, command: str) -> str:
        for readme, ours in self.moves.items():
            command = command.replace(readme, ours)
        return PLACEHOLDER.sub(lambda m: self.earlier(m.group(1) or "api_key"), command)

    def earlier(self, field: str) -> str:
        """The latest value of `field` an earlier command printed."""
        for out in reversed(self.printed):
            if isinstance(out, dict) and field in out:
                return str(out[field])
        raise AssertionError(f"no earlier command printed {field!r}")

    def run(self, command: str) -> Any:
        command = self.fill(command)
        if "__sim/sms/last" in command:  # the worker texts the code a moment after the request
            wait_for(lambda: not _error(self._bash(command)), timeout_s=30, what="the login code")
        if command.startswith("export "):
            name, _, value = command.removeprefix("export ").partition("=")
            self.env[name] = value
            return None
        out = self._bash(command)
        assert not _error(out), f"{command}\n{out}"
        self.printed.append(out)
        return out

    def _bash(self, command: str) -> Any:
        """What `command` printed, parsed as JSON where it is JSON; it must exit 0."""
        done = subprocess.run(
            ["bash", "-c", command], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            return done.stdout


def _error(out: Any) -> bool:
    """An error answer: the API's `{"error": {...}}`, or a simulator's `{"error": "..."}`."""
    return isinstance(out, dict) and set(out) == {"error"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One `genq run` for the module (the knobs test, which makes RunningHub fail, runs last)."""
    yield from _run_stack(tmp_path_factory.mktemp("readme"), external=False)


@pytest.fixture
def shell(stack: Stack) -> Shell:
    """The README's addresses moved to the stack's: each banner name's host:port, as README and
    stack print it (`localhost:P` too)."""
    ours = stack.lines
    moves: dict[str, str] = {}
    for name, url in banner(block("", "api: ")).items():
        if name in ours and url.startswith("http://") and " " not in url:
            readme_host, our_host = httpx.URL(url).netloc.decode(), httpx.URL(ours[name]).netloc.decode()
            moves[readme_host] = our_host
            moves[readme_host.replace("127.0.0.1", "localhost")] = our_host
    return Shell(stack, moves)


def test_the_quick_start_starts_genq_run_and_its_banner_is_the_readme_s(stack: Stack) -> None:
    start = commands(block("sh", "make run"))
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    printed = banner(block("", "api: "))

    assert [c.split("#")[0].strip() for c in start] == ["make install", "make run"]
    assert re.search(r"^run: install\n\t\$\(BIN\)/genq run$", makefile, re.M)
    assert list(printed) == list(stack.lines)
    assert printed["ready"] == stack.lines["ready"]


def test_the_quick_start_s_first_job_and_every_other_kind_are_taken(shell: Shell) -> None:
    first = commands(block("sh", "users create"))
    post = next(c for c in first if "POST" in c and "/v1/jobs" in c)
    others = commands(block("sh", '-d \'{"kind": "basic_clean"'))

    outputs = [shell.run(c) for c in first]
    job_id = outputs[2]["id"]
    get = first[3]
    done = wait_for(
        lambda: (job := shell.run(get))["status"] in ("succeeded", "failed") and job, timeout_s=60, what="the job"
    )
    accepted = [shell.run(_with_body(post, fragment)) for fragment in others]

    assert outputs[0]["api_key"].startswith("gq_")
    assert done["id"] == job_id and done["status"] == "succeeded" and len(done["results"]) == 12
    assert [job["kind"] for job in accepted] == ["basic_clean", "video", "model_3d"]
    assert all(job["status"] == "queued" for job in accepted)


def test_the_quick_start_s_phone_login_buys_a_plan(shell: Shell) -> None:
    steps = commands(block("sh", "sms-code"))

    for command in steps[:-1]:
        shell.run(command)
    member = wait_for(lambda: (m := shell.run(steps[-1]))["member"] and m, timeout_s=30, what="the plan")

    assert member["plan"] == "pro" and member["credits"] == 100


def test_the_quick_start_s_simulator_knobs_work(shell: Shell) -> None:
    knobs = re.findall(r"`(curl [^`]+/__sim/config[^`]*)`", quick_start())

    answers = [shell.run(command) for command in knobs]

    assert len(answers) == 2
    assert answers[0]["job_fail_rate"] == 1 and answers[1]["running_s"] == 5


def _with_body(post: str, fragment: str) -> str:
    """The first job's POST with another body, and without its Idempotency-Key (that key names the
    first job; the README says to give another or none)."""
    command = re.sub(r"-d '.*'$", fragment, post)
    return re.sub(r"-H 'Idempotency-Key: [^']*' ", "", command)
