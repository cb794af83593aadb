"""structlog setup: JSON off a TTY (console on one), context bound per request and per actor run.

Values under secret-looking keys are masked to their last 4 characters before anything renders.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from infra.settings import Settings, mask

_SECRET_WORDS = ("api_key", "apikey", "secret", "token", "password", "authorization", "signature")


def mask_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = mask(value)
    return event


def configure(settings: Settings, *, stream: Any = None) -> None:
    stream = stream or sys.stderr
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    level = logging.getLevelName(settings.log_level.upper())
    logging.basicConfig(level=level, stream=stream, format="%(message)s")
    for noisy in ("httpx", "httpcore", "botocore", "werkzeug"):  # a line per request, signed URLs in them
        logging.getLogger(noisy).setLevel(max(level if isinstance(level, int) else 0, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
