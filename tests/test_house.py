"""House rules of the suite itself, checked by reading its source (no service, no import of it).

No test sleeps to let time pass: it moves an injected clock, or waits on a condition with a timeout
(`tests.support.wait_for`, `broker.join` + `worker.join`). A sleep is any call of `time.sleep`,
`asyncio.sleep`, `anyio.sleep` or a bare `sleep` (however imported). A fake clock's own `sleep`
method (client/tests/client_fakes.py) moves that clock and is not one.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parent.parent
SUITES = (REPO / "tests", REPO / "client" / "tests")
SLEEPERS = frozenset({"time", "asyncio", "anyio", "trio"})

# Each sleep allowed, by file and count, with the reason it is not time passing for a test.
ALLOWED: dict[str, tuple[int, str]] = {
    "tests/support.py": (1, "wait_for's poll interval: the one loop that waits on a condition, with a timeout"),
}


def sleeps(source: str) -> int:
    """How many sleep calls the module makes."""
    found = 0
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "sleep":
            found += isinstance(func.value, ast.Name) and func.value.id in SLEEPERS
        elif isinstance(func, ast.Name) and func.id == "sleep":
            found += 1
    return found


def test_no_test_sleeps_to_let_time_pass() -> None:
    found = Counter(
        {
            path.relative_to(REPO).as_posix(): n
            for suite in SUITES
            for path in sorted(suite.rglob("*.py"))
            if (n := sleeps(path.read_text(encoding="utf-8")))
        }
    )

    allowed = Counter({path: n for path, (n, _) in ALLOWED.items()})
    assert found == allowed, "sleeps outside the allow-list (or an entry no longer needed): inject a clock or wait_for"


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("import time\ntime.sleep(1)", 1),
        ("from time import sleep\nsleep(0.1)", 1),
        ("import asyncio\nasync def f():\n    await asyncio.sleep(0)", 1),
        ("clock.sleep(5)\nself.sleep(1)", 0),
        ("stop.wait(0.1)", 0),
    ],
)
def test_the_check_finds_sleeps_and_only_sleeps(source: str, count: int) -> None:
    assert sleeps(source) == count
