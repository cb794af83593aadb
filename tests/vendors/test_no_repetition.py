"""No six statements of the same shape stand in two vendor clients, or in two simulators (issue 14 c).

What two vendors share lives once: `vendors.base` / `vendors.plumbing` / `vendors.moderation` /
`vendors.tencent_cloud` for the clients, `vendors.sim.common` / `tasks` / `notifier` / `outbox` for
the simulators. This check keeps it that way: each module is read as its statements (logical lines,
so formatting does not matter), each reduced to its shape (names, strings and numbers replaced by
placeholders, keywords and operators kept), and no run of `WINDOW` consecutive shapes may appear in
two modules of the same family, unless `ALLOWED` names it with its reason.

Left out, because they are vocabulary rather than logic: docstrings and comments, imports, a
module's constants (a top-level `NAME = literal` or `NAME: Final = literal`) and annotated
declarations (`name: type [= default]`, a dataclass's fields). Consecutive statements of the very
same shape (a constructor keeping its arguments) count as one.
"""

from __future__ import annotations

import io
import keyword
import token
import tokenize
from pathlib import Path

VENDORS = Path(__file__).resolve().parents[2] / "vendors"
WINDOW = 6
SHARED_CLIENT_MODULES = frozenset({"__init__", "base", "plumbing", "moderation"})
"""Not vendor clients: what the clients share."""
SHARED_SIM_MODULES = frozenset(
    {"__init__", "common", "tasks", "notifier", "outbox", "media", "photos", "meshes", "video"}
)
"""Not simulators: what the simulators share (the last four make their media)."""

ALLOWED: frozenset[frozenset[str]] = frozenset()
"""Pairs of modules allowed to share a run, each with the reason their protocols share it. None so far."""

_LITERALS = frozenset({token.STRING, token.NUMBER})
_SKIPPED = frozenset({token.COMMENT, token.NL, token.INDENT, token.DEDENT, token.ENCODING, token.ENDMARKER})


def statements(source: str) -> list[tuple[int, tuple[str, ...]]]:
    """(first line, shape) of each statement that counts, in order."""
    shapes: list[tuple[int, tuple[str, ...]]] = []
    current: list[tokenize.TokenInfo] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _SKIPPED:
            continue
        if tok.type != token.NEWLINE:
            current.append(tok)
            continue
        if current and counts(current):
            this = tuple(shape(tok) for tok in current)
            if not shapes or shapes[-1][1] != this:
                shapes.append((current[0].start[0], this))
        current = []
    return shapes


def counts(tokens: list[tokenize.TokenInfo]) -> bool:
    """False for a docstring, an import, an annotated declaration or a module-level constant."""
    first = tokens[0]
    if len(tokens) == 1 and first.type == token.STRING:
        return False
    if first.string in ("import", "from"):
        return False
    if len(tokens) > 2 and first.type == token.NAME and tokens[1].string == ":" and not keyword.iskeyword(first.string):
        return False
    is_constant = first.start[1] == 0 and first.type == token.NAME and first.string.isupper()
    return not (is_constant and tokens[-1].type in _LITERALS and tokens[-2].string == "=")


def shape(tok: tokenize.TokenInfo) -> str:
    if tok.type == token.NAME and not keyword.iskeyword(tok.string):
        return "name"
    if tok.type in _LITERALS:
        return "literal"
    return tok.string


def family(under: Path, shared: frozenset[str]) -> dict[str, list[tuple[int, tuple[str, ...]]]]:
    return {path.stem: statements(path.read_text()) for path in sorted(under.glob("*.py")) if path.stem not in shared}


def repeated_runs(modules: dict[str, list[tuple[int, tuple[str, ...]]]]) -> list[str]:
    """`a.py:line ~ b.py:line` for the first shared run of each pair of modules."""
    seen: dict[tuple[tuple[str, ...], ...], tuple[str, int]] = {}
    found: dict[frozenset[str], str] = {}
    for name, shapes in modules.items():
        for start in range(len(shapes) - WINDOW + 1):
            run = tuple(s for _, s in shapes[start : start + WINDOW])
            line = shapes[start][0]
            other = seen.setdefault(run, (name, line))
            pair = frozenset({name, other[0]})
            if other[0] != name and pair not in ALLOWED and pair not in found:
                found[pair] = f"{other[0]}.py:{other[1]} ~ {name}.py:{line}"
    return sorted(found.values())


def test_no_two_vendor_clients_repeat_a_block() -> None:
    modules = family(VENDORS, SHARED_CLIENT_MODULES)

    assert len(modules) >= 10, "the client family should hold every vendor client"
    assert repeated_runs(modules) == []


def test_no_two_simulators_repeat_a_block() -> None:
    modules = family(VENDORS / "sim", SHARED_SIM_MODULES)

    assert len(modules) >= 10, "the simulator family should hold every simulator"
    assert repeated_runs(modules) == []


def test_the_check_finds_a_repeated_block() -> None:
    """The check itself: the same six statements under other names and values are found."""
    first = "def f(a):\n    x = a + 1\n    y = x * 2\n    if y:\n        return g(y)\n    return None\n"
    second = first.replace("a", "b").replace("1", "5").replace("g(", "h(")
    modules = {"one": statements(first), "two": statements("VALUE = 3\n" + second)}

    assert repeated_runs(modules) == ["one.py:1 ~ two.py:2"]
