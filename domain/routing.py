"""Which vendor and model serve a job kind: the job's slot is (vendor, model)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.jobs import JobKind


@dataclass(frozen=True)
class Route:
    vendor: str
    model: str

    @property
    def slot(self) -> str:
        return f"{self.vendor}:{self.model}"


def route(kind: JobKind, _input: Mapping[str, Any]) -> Route:
    if kind is JobKind.MODEL_POSE12:
        return Route("runninghub", "pose12")
    raise NotImplementedError(kind)
