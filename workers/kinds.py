"""Per kind: the vendor request a job becomes when the generation actor submits it.

Server-side details (the prompt builder, the seed) stay here, never in the API's answers.
"""

from __future__ import annotations

import random

from domain import pose12
from domain.jobs import Job, JobKind
from infra.settings import Settings
from vendors.runninghub import AppRun, NodeValue


def request(job: Job, settings: Settings, rng: random.Random) -> object:
    if job.kind is JobKind.MODEL_POSE12:
        return _pose12(job, settings, rng)
    raise NotImplementedError(job.kind)


def _pose12(job: Job, settings: Settings, rng: random.Random) -> AppRun:
    prompt = pose12.build_prompt(pose12.Scene(job.input["scene"]), pose12.Category(job.input["category"]))
    values = {
        settings.runninghub_node_prompt: prompt,
        settings.runninghub_node_image: str(job.input["image_url"]),
        settings.runninghub_node_seed: str(rng.randint(0, pose12.SEED_MAX)),
    }
    return AppRun(
        webapp_id=settings.runninghub_webapp_id,
        nodes=tuple(NodeValue(*_node(spec), value) for spec, value in values.items()),
    )


def _node(spec: str) -> tuple[str, str]:
    """`"6:text"` -> node id "6", field "text" (settings name the app's nodes this way)."""
    node_id, _, field_name = spec.partition(":")
    return node_id, field_name
