"""The printed tables. genq's times are the bench's (scaled) seconds; seed 001's are its own hours and
minutes, so read the ratios across, not the times."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import scale
from bench.api_load import CLIENTS, ROW_S, SUBMIT, WARMUP_S, ApiRow
from bench.pipeline import DRAIN_CAP_S, RSS_BUDGET_S, RSS_JOBS, WARMUP_JOBS, Pipeline
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


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}" if value < 1 else f"{value:.1f}"


def fraction(share: float) -> str:
    """0.0004 as "1/2,500": a small share reads better as one in so many."""
    return f"{share:.2f}" if share >= 0.1 or share <= 0 else f"1/{1 / share:,.0f}"


def verdict(met: bool, detail: str) -> str:
    return f"{'met' if met else 'NOT met'} ({detail})"


def services_line(settings: Settings) -> str:
    database = "PostgreSQL" if settings.sqlalchemy_url.startswith("postgresql") else "SQLite (embedded default)"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"  database: {database}; Redis: {settings.redis_url}; {os.cpu_count()} cores, everything on loopback;"
        f" load average now {load}"
    )


def api_table(rows: Sequence[ApiRow], settings: Settings) -> str:
    bare = rows[0].run.rate
    title = "\n".join(
        [
            "API (issue 11 point 7): one server process each (uvicorn.run as `genq api` calls it),"
            f" {CLIENTS} keep-alive clients",
            f"  (an asyncio HTTP/1.1 load generator in this process), {ROW_S:.0f} s a row after {WARMUP_S:.0f} s of"
            " warm-up;",
            "  bare Litestar (one sync handler, thread pool) is the baseline, measured in this run. One user per",
            "  client unless said. Submits are charged and queued (no worker runs them); model_pose12's image comes",
            "  from the sample server (another process, allow-listed). CPU: the process's CPU time over the row's",
            "  time (100 % = one core). SQL, tx (transactions) and pings: the API process's, per request.",
            services_line(settings),
        ]
    )
    header = ["load", "req/s", "p50", "p99", "/ bare", "target (issue 11)", "server CPU", "client CPU"]
    header += ["SQL/req", "tx/req", "pings/req"]
    body = []
    for row in rows:
        share = row.run.rate / bare
        counts = row.counts or {}
        body.append(
            [
                row.label,
                rate(row.run.rate),
                seconds(row.run.p(0.5)),
                seconds(row.run.p(0.99)),
                f"{share:.2f}",
                _api_target(row, share),
                f"{row.server_cpu:.0%}",
                f"{row.run.client_cpu:.0%}",
                *(f"{counts[name]:.1f}" if counts else DASH for name in ("statements", "transactions", "pings")),
            ]
        )
    notes = [f"  {row.label}: unexpected answers {row.run.unexpected}" for row in rows if row.run.unexpected]
    return "\n".join([title, render(header, body), *notes])


def _api_target(row: ApiRow, share: float) -> str:
    if row.label == SUBMIT:
        met = share >= 1 / 4 and row.run.p(0.99) <= 0.050
        return verdict(met, ">= 1/4 of bare, p99 <= 50 ms")
    if row.label.startswith("GET /v1/jobs/"):
        return verdict(share >= 1 / 2, ">= 1/2 of bare")
    return DASH


def pipeline_table(p: Pipeline, settings: Settings) -> str:
    title = "\n".join(
        [
            f"pipeline (issue 11 point 7): one worker process (`genq worker`, every queue but maintenance, {p.threads}"
            " threads),",
            "  KIE simulator at zero latency on loopback, no slot limit binding, first poll 1 ms after the submit;",
            "  raw Dramatiq: a no-op actor, same broker settings, same threads, same Redis, measured in this run.",
            services_line(settings),
        ]
    )
    drain = p.drain
    done = f"all ended in {seconds(drain.seconds)}"
    if drain.capped:
        done = f"{drain.done:,} of {drain.queued:,} ended within the {DRAIN_CAP_S:.0f} s cap"
    share = drain.rate / p.noop_rate
    counts = p.per_job
    postgres = settings.sqlalchemy_url.startswith("postgresql")
    trips = counts["statements"] + 2 * counts["transactions"] + counts["pings"]
    mib = 2**20
    rss_target = f"<= 10 % over {RSS_JOBS:,} jobs" + ("" if p.rss_jobs >= RSS_JOBS else f"; seen over {p.rss_jobs:,}")
    over = f"{RSS_JOBS:,} asked: the {RSS_BUDGET_S:.0f} s budget ran out first" if p.rss_jobs < RSS_JOBS else DASH
    body = [
        [f"drain: {drain.queued:,} jobs queued, released at once", f"{rate(drain.rate)} jobs/s", done],
        [
            f"raw Dramatiq: {p.noop_messages:,} no-op messages queued",
            f"{rate(p.noop_rate)} msg/s",
            "baseline",
        ],
        ["drain / raw Dramatiq", fraction(share), verdict(share >= 1 / 8, "target >= 1/8")],
        [
            "Dramatiq messages per job (the rest rounds)",
            f"{counts['messages']:.1f}",
            f"free work would give at most 1/{counts['messages']:.1f} of raw",
        ],
        ["worker SQL statements per job", f"{counts['statements']:.1f}", "enqueue to success"],
        ["  transactions per job (BEGIN ... COMMIT/ROLLBACK)", f"{counts['transactions']:.1f}", DASH],
        ["  pool pre-pings per job", f"{counts['pings']:.1f}", DASH],
        [
            "  round trips per job (statements + 2 x transactions + pings)",
            f"{trips:.0f}" if postgres else DASH,
            "PostgreSQL" if postgres else "SQLite: no network",
        ],
        ["worker CPU per job", seconds(counts["cpu_s"]), DASH],
        [
            f"worker RSS: after {WARMUP_JOBS} warm-up jobs -> after {p.rss_jobs:,} more",
            f"{p.rss_before / mib:.0f} -> {p.rss_after / mib:.0f} MiB",
            over,
        ],
        ["  RSS growth", f"{p.rss_growth:+.1%}", verdict(p.rss_growth <= 0.10, rss_target)],
    ]
    return title + "\n" + render(["pipeline", "genq", "note / target"], body)
