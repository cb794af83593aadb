"""`python -m bench` (`make bench`): run the scenarios, print the tables. Never asserts timings."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import api_load, measure, pipeline, profiling, report, scale, zips
from bench.harness import WORKER_THREADS, running
from bench.results import Batch, Handoff
from bench.scenarios import FAST, SLOW, member, run_queue, seed_batch, video
from bench.services import services
from domain import scheduling
from domain.jobs import JobKind
from domain.plans import parse_plans
from domain.scheduling import PollSchedule
from infra import logging as genq_logging
from infra.resources import Resources
from infra.settings import Settings

MODEL_LIMIT = 10  # KIE_CONCURRENCY_SORA_2_PRO: above every plan cap but enterprise's, so the plan binds
PLANS = (("pro", scale.SEED_PRO), ("enterprise", scale.SEED_PRO_PLUS))
HANDOFF_JOBS = 21


def budget(vendor_s: float, cap: int) -> float:
    """How long a scenario may take before the bench gives up: twice its lower bound, plus a minute."""
    return 60 + 2 * vendor_s / cap


def batch(settings: Settings, plan: str) -> Batch:
    settings = settings.with_(kie_concurrency_sora_2_pro=MODEL_LIMIT)
    cap = min(parse_plans(settings.plans)[plan].concurrency, MODEL_LIMIT)
    slow_weight = scheduling.size_weight(JobKind.VIDEO, SLOW)
    slow_cap = min(cap, scheduling.admission_threshold(MODEL_LIMIT, slow_weight))
    with running(settings) as h:
        user = member(h.resources, plan)
        bodies = seed_batch()
        vendor_s = len(bodies) / 2 * (scale.VIDEO_720P_S + scale.VIDEO_1080P_S)
        rows = parse_plans(settings.plans)[plan].batch  # seed 001: batches of the plan's size (15, 50)
        t0, submit_s = run_queue(h, user, bodies, timeout_s=budget(vendor_s, cap), batch_rows=rows)
        calls, at_vendor = measure.status_calls(h), measure.most_at_vendor(h)
        runs = measure.runs(h, user)
    return Batch(plan, cap, slow_cap, t0, tuple(runs), calls, at_vendor, submit_s)


def handoff(settings: Settings) -> Handoff:
    """Limit 1, a queue of 720p-10 s jobs from one enterprise user (its cap never binds)."""
    settings = settings.with_(kie_concurrency_sora_2_pro=1)
    with running(settings) as h:
        user = member(h.resources, "enterprise")
        bodies = [video(FAST, batch=False) for _ in range(HANDOFF_JOBS)]
        run_queue(h, user, bodies, timeout_s=budget(scale.VIDEO_720P_S * HANDOFF_JOBS, 1))
        runs = measure.runs(h, user)
    interval = PollSchedule.parse(settings.poll_schedule_video_720p, max_polls=1).interval(0)
    return Handoff(tuple(runs), interval)


def archive_runs(settings: Settings) -> list[zips.ZipRun]:
    resources = Resources.open(settings)
    try:
        resources.storage.ensure_bucket()
        return zips.measure(resources.storage)
    finally:
        resources.close()


SECTIONS = ("batch", "handoff", "zips", "api", "pipeline")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    settings_env = Settings.from_env()
    started = time.monotonic()
    with services(settings_env) as settings:
        genq_logging.configure(settings)
        logging.getLogger("dramatiq").setLevel(logging.WARNING)  # no start/stop lines between tables
        for section in args.sections or SECTIONS:
            print("\n" + _section(section, settings, args.profile), flush=True)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    return 0


def _section(name: str, settings: Settings, profile_dir: Path | None) -> str:
    if name == "batch":
        pairs = [(batch(settings, plan), seed) for plan, seed in PLANS]
        preamble = report.preamble(settings, model_limit=MODEL_LIMIT, threads=WORKER_THREADS)
        return preamble + "\n\n" + report.batch_table(pairs)
    if name == "handoff":
        return report.handoff_table(handoff(settings))
    if name == "zips":
        return report.zip_table(archive_runs(settings), zips.FILE_BYTES)
    if name == "api":
        recorder = profiling.Recorder(profile_dir, "api-submit", api_load.ROW_S) if profile_dir else None
        table = report.api_table(api_load.measure(settings, profile=recorder), settings)
        return table + ("\n\n" + recorder.summary() if recorder else "")
    return report.pipeline_table(pipeline.measure(settings, threads=WORKER_THREADS), settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="genq's bench: prints tables, asserts nothing")
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy the API during the prompt-only submit row: DIR/api-submit-{wall,gil}.txt, top costs printed",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
