"""The API built from settings: one process (`genq api`), or each of `genq api --workers N`'s.

uvicorn's multi-process mode imports an app factory in every worker process it starts; each
calls `worker_app()` and builds its own resources (database pool, Redis client, broker) from the
environment's settings. Processes share the listening socket and nothing else.
"""

from __future__ import annotations

import os

from litestar import Litestar

from api.app import create_app
from infra import logging as genq_logging
from infra.lifetime import exit_with_parent
from infra.resources import Resources, redis_url
from infra.settings import Settings
from workers import broker

WORKER_FACTORY = "api.factory:worker_app"  # for uvicorn: an import string, called with no arguments


def build_app(settings: Settings) -> Litestar:
    """The API over fresh resources; the broker it sends through is installed for this process."""
    broker.install(broker.redis_broker(redis_url(settings)))
    return create_app(Resources.open(settings))


def worker_app() -> Litestar:
    """One of `genq api --workers N`'s processes. It stops when the `genq api` process that started
    it is gone: that one stops its workers itself, unless it was killed outright."""
    settings = Settings.from_env()
    genq_logging.configure(settings)
    exit_with_parent(os.getppid())
    return build_app(settings)
