"""Which vendor and model serve a job: the job's slot is (vendor, model)."""

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


def route(kind: JobKind, job_input: Mapping[str, Any]) -> Route:
    match kind:
        case JobKind.BASIC_CLEAN:
            return Route("tencent_ci", "goods_matting")
        case JobKind.MODEL_POSE12:
            return Route("runninghub", "pose12")
        case JobKind.VIDEO:
            return Route("kie", str(job_input["model"]))
        case JobKind.MODEL_3D:
            return Route("hunyuan3d", "pro")  # 3.0 and 3.1 share the account's Pro job limit
    raise NotImplementedError(kind)
