"""What a job costs and how long it may take, by variant: configuration values, looked up by pattern.

A job's variant key is `kind`, or for videos `video/<model>/<resolution>/<duration>` and for 3D
`model_3d/<version>`. Table keys are patterns over those segments (`*` matches any one segment,
and a shorter pattern matches every longer key it is a prefix of); the most specific wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domain.errors import InvalidInput
from domain.jobs import JobKind

T = TypeVar("T")


def variant_key(kind: JobKind, job_input: Mapping[str, Any]) -> str:
    if kind is JobKind.VIDEO:
        return f"video/{job_input['model']}/{job_input['resolution']}/{job_input['duration']}"
    if kind is JobKind.MODEL_3D:
        return f"model_3d/{job_input['version']}"
    return str(kind)


@dataclass(frozen=True)
class PatternTable(Generic[T]):
    entries: Mapping[str, T]

    def lookup(self, key: str) -> T | None:
        parts = key.split("/")
        best: tuple[int, int] | None = None
        found: T | None = None
        for pattern, value in self.entries.items():
            segments = pattern.split("/")
            if len(segments) > len(parts) or any(s not in ("*", p) for s, p in zip(segments, parts, strict=False)):
                continue
            rank = (len(segments), sum(s != "*" for s in segments))
            if best is None or rank > best:
                best, found = rank, value
        return found

    @classmethod
    def parse(cls, text: str, value: Callable[[str], T]) -> PatternTable[T]:
        """`"basic_clean=1,video/*/1080p=900"` -> {pattern: value}."""
        entries = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            pattern, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not pattern=value")
            entries[pattern.strip()] = value(raw.strip())
        return cls(entries)


@dataclass(frozen=True)
class Terms:
    price: int  # credits
    deadline_s: int


@dataclass(frozen=True)
class PriceList:
    prices: PatternTable[int]
    deadlines: PatternTable[int]

    def quote(self, kind: JobKind, job_input: Mapping[str, Any]) -> Terms:
        key = variant_key(kind, job_input)
        price, deadline = self.prices.lookup(key), self.deadlines.lookup(key)
        if price is None or deadline is None:
            raise InvalidInput("kind", f"{key} is not offered")
        return Terms(price, deadline)
