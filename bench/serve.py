"""`python -m bench.serve genq|bare|samples PORT STATS_FILE`: one server process for the API table.

`genq` serves what `genq api` serves (`api.factory.build_app` over the environment's settings) with
the bench's database counters; `bare` is Litestar with one sync "hello" handler and nothing else,
the baseline. Both go through the same `uvicorn.run` call as `genq api`: one process, loopback.
`samples` is the sample-image server (the public web of input images), in a process of its own so
that serving images takes nothing from the load generator.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, get

from bench.counting import count_database, write_on_request
from infra import logging as genq_logging
from infra.lifetime import exit_with_parent
from infra.settings import Settings
from vendors.sim.common import asgi_app
from vendors.sim.samples import SampleImages


def bare_app() -> Litestar:
    @get("/", sync_to_thread=True)
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return Litestar(route_handlers=[hello])


def main(argv: Sequence[str]) -> int:
    kind, port, stats = argv[0], int(argv[1]), Path(argv[2])
    settings = Settings.from_env()
    genq_logging.configure(settings)
    exit_with_parent(settings.supervisor_pid)
    count_database()
    write_on_request(stats)
    app: Any
    if kind == "genq":
        from api.factory import build_app

        app = build_app(settings)
    elif kind == "samples":
        app = asgi_app(SampleImages().handle)
    else:
        app = bare_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
