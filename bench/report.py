"""The printed tables. genq's times are the bench's (scaled) seconds; seed 001's are its own hours and
minutes, so read the ratios across, not the times."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import scale
from bench.results import Batch, Handoff, quantile
from bench.scale import SeedRow
from bench.zips import ZipRun
from domain.scheduling import PollSchedule
from infra.settings import Settings

DASH = "-"


@dataclass(frozen=True)
class Row:
    label: str
    genq: Callable[[Batch], str]
    seed: Callable[[SeedRow], str] = lambda _: DASH


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.1f} s"


def clock(value: float) -> str:
    return f"{value / 3600:.2f} h" if value >= 3600 else f"{value / 60:.0f} min"


def ratio(part: float, whole: float) -> str:
    return f"{part / whole:.2f}"


def lags(values: Sequence[float]) -> str:
    return f"{quantile(values, 0.5) * 1000:.0f} / {quantile(values, 0.95) * 1000:.0f} ms"


def seed_polls(row: SeedRow) -> float:
    """Polls per job that seed 001's own schedule (genq's defaults, unscaled) makes at its times."""
    defaults = Settings()
    fast = PollSchedule.parse(defaults.poll_schedule_video_720p, max_polls=defaults.poll_max)
    slow = PollSchedule.parse(defaults.poll_schedule_video_1080p, max_polls=defaults.poll_max)
    per_video = row.cap / 100
    return (
        scale.ideal_polls(fast, row.all_720p_s * per_video) + scale.ideal_polls(slow, row.all_1080p_s * per_video)
    ) / 2


BATCH_ROWS = (
    Row("concurrency the user may use (plan cap)", lambda b: str(b.cap), lambda s: str(s.cap)),
    Row("  1080p-15 s at once, at most (room threshold)", lambda b: str(b.slow_cap)),
    Row("  most vendor tasks at once (simulator)", lambda b: str(b.at_vendor)),
    Row("makespan (t0: all 100 waiting; to all ready)", lambda b: seconds(b.makespan), lambda s: clock(s.mixed_s)),
    Row("  unscaled (/ scale)", lambda b: clock(b.makespan / scale.SCALE)),
    Row("  lower bound: vendor time / concurrency", lambda b: seconds(b.bound), lambda s: clock(s.mixed_bound_s)),
    Row("  makespan / lower bound", lambda b: ratio(b.makespan, b.bound), lambda s: ratio(s.mixed_s, s.mixed_bound_s)),
    Row("  makespan / bound with the threshold", lambda b: ratio(b.makespan, b.threshold_bound)),
    Row("fast part (every 720p result) ready", lambda b: seconds(b.fast_ready), lambda s: clock(s.fast_s)),
    Row("  lower bound: 720p vendor time / conc.", lambda b: seconds(b.fast_bound), lambda s: clock(s.fast_bound_s)),
    Row(
        "  fast ready / lower bound",
        lambda b: ratio(b.fast_ready, b.fast_bound),
        lambda s: ratio(s.fast_s, s.fast_bound_s),
    ),
    Row("fast ready / makespan", lambda b: ratio(b.fast_ready, b.makespan), lambda s: ratio(s.fast_s, s.mixed_s)),
    Row(
        "slot utilisation (vendor-busy)",
        lambda b: f"{b.utilisation:.0%}",
        lambda s: f"{s.mixed_bound_s / s.mixed_s:.0%}",
    ),
    Row("slot held (admission -> release)", lambda b: f"{b.held:.0%}"),
    Row("  held beyond vendor time, p50 / p95", lambda b: lags(b.overheads)),
    Row("  vendor done -> noticed, p50 / p95", lambda b: lags(b.detect_lags)),
    Row("vendor status calls (recordInfo) per job", lambda b: f"{b.calls_per_job:.1f}"),
    Row("  of which polls (+1: archiving's lookup)", lambda b: f"{b.polls_per_job:.1f}"),
    Row("  ideal polls for the schedule", lambda b: f"{b.ideal_polls_per_job:.1f}", lambda s: f"{seed_polls(s):.1f}"),
    Row("submission: POST /v1/batches of the plan's size, before t0", lambda b: seconds(b.submit_s)),
)


def batch_table(pairs: Sequence[tuple[Batch, SeedRow | None]]) -> str:
    header = ["metric"]
    for batch, seed in pairs:
        header += [f"genq {batch.plan}"] + ([seed.name] if seed else [])
    body = []
    for row in BATCH_ROWS:
        cells = [row.label]
        for batch, seed in pairs:
            cells += [row.genq(batch)] + ([row.seed(seed)] if seed else [])
        body.append(cells)
    return render(header, body)


def zip_table(runs: Sequence[ZipRun], file_bytes: int) -> str:
    title = (
        "batch archive (issue 9 g): GET /v1/batches/{id}/archive's zip, streamed from storage;"
        f" baseline: one file, {file_bytes / 2**20:.0f} MiB"
    )
    body = [
        [
            str(run.rows),
            f"{run.zip_bytes / 2**20:.0f} MiB",
            f"{run.peak_bytes / 2**20:.1f} MiB",
            f"{run.peak_bytes / file_bytes:.2f}",
        ]
        for run in runs
    ]
    return title + "\n" + render(["rows", "zip", "peak traced memory", "peak / one file"], body)


def handoff_table(handoff: Handoff) -> str:
    def both(values: Sequence[float]) -> list[str]:
        return [seconds(statistics.median(values)), seconds(quantile(values, 0.95))]

    title = (
        f"wake-on-release (acceptance c): KIE_CONCURRENCY_SORA_2_PRO=1, {len(handoff.runs)} 720p-10 s jobs waiting,"
        f" {len(handoff.admissions)} hand-offs; engine times are real, not scaled"
    )
    body = [
        ["slot released -> next admission (queued -> submitting)", *both(handoff.admissions)],
        ["slot released -> next vendor task created", *both(handoff.vendor_starts)],
        ["baseline: vendor done -> slot released (the poll)", *both(handoff.detect_lags)],
        ["baseline: 720p poll interval here (scaled)", seconds(handoff.poll_interval_s), DASH],
        ["baseline: 720p poll interval unscaled", seconds(handoff.poll_interval_s / scale.SCALE), DASH],
    ]
    return title + "\n" + render(["hand-off", "median", "p95"], body)


def preamble(settings: Settings, *, model_limit: int, threads: int) -> str:
    return "\n".join(
        [
            "genq bench: seed 001's batch on the KIE simulator. The API and the engine run in this process (one",
            f"  Dramatiq worker, {threads} threads, every queue, the real Redis broker; no reconciler); polling only.",
            f"scale: 1 s here = {1 / scale.SCALE:.1f} s in seed 001; vendor time per video (its Pro row, 1 : 6):",
            f"  720p-10 s {scale.SEED_720P_S:.1f} s -> {scale.VIDEO_720P_S:.2f} s,"
            f" 1080p-15 s {scale.SEED_1080P_S:.1f} s -> {scale.VIDEO_1080P_S:.2f} s.",
            "  Scaled alike: infra/settings.py's default poll schedules (3 -> 5 -> 8 s, 5 -> 8 -> 12 s), now",
            f"    720p {schedule(settings.poll_schedule_video_720p)}",
            f"    1080p {schedule(settings.poll_schedule_video_1080p)};",
            f"  dramatiq's idle back-off (worker_timeout, 1000 ms by default) {scale.worker_idle_ms()} ms;"
            " KIE's createTask rate window.",
            "  Not scaled: the engine's own work (database, Redis, HTTP), deadlines, lease TTLs.",
            "100 sora-2-pro videos through POST /v1/batches: 50 x 720p-10 s (batch_fast) + 50 x 1080p-15 s",
            "  (batch_slow), rows given slow-first, in batches of the plan's size (Pro 15: 7 batches; enterprise",
            f"  50: two) for one user per plan; KIE_CONCURRENCY_SORA_2_PRO={model_limit}.",
        ]
    )


def schedule(text: str) -> str:
    """`"0:0.0198,0.397:0.0331"` as "19.8 ms, from 0.40 s 33.1 ms"."""
    steps = PollSchedule.parse(text, max_polls=1).steps
    return ", ".join(seconds(every) if start == 0 else f"from {start:.2f} s {seconds(every)}" for start, every in steps)


def render(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    rows = [list(header), *map(list, body)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
