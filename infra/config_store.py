"""Admin overrides of the settings: prices, plans, vendor limits, polling (SPEC §6, §8 Admin).

The environment gives each process its base `Settings`; the `config_overrides` table holds what an
admin changed since. Every process reads the table again at most `cache_s` after its last read,
so a change reaches the next job everywhere without a restart. A change is checked twice before
it is stored (by the settings' type rules, then by the domain parser that will read it) and is
recorded in `config_changes` (who, when, old, new) in the same transaction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from domain.errors import InvalidInput
from domain.jobs import JobKind
from domain.plans import parse_plans
from domain.pricing import PatternTable
from domain.scheduling import PollSchedule
from infra.db import config_changes, config_overrides
from infra.settings import Settings, SettingsError

log = structlog.get_logger()

LIMITS: Final = frozenset(
    {
        "runninghub_concurrency",
        "hunyuan3d_concurrency",
        "kie_concurrency_sora_2",
        "kie_concurrency_sora_2_pro",
        "ci_concurrency",
        "poll_max",
        "membership_days",
    }
)
POLL_SCHEDULES: Final = frozenset(
    {"poll_schedule_image", "poll_schedule_video_720p", "poll_schedule_video_1080p", "poll_schedule_3d"}
)
ADJUSTABLE: Final = LIMITS | POLL_SCHEDULES | {"prices", "deadlines", "plans"}


@dataclass(frozen=True)
class Change:
    key: str
    old_value: str | None
    new_value: str
    changed_by: str  # users.id of the admin
    changed_at: datetime


class ConfigStore:
    def __init__(self, engine: Engine, *, cache_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._cache_s = cache_s
        self._clock = clock
        self._loaded: tuple[float, dict[str, str]] | None = None  # (clock at read, overrides)
        self._applied: tuple[Settings, dict[str, str], Settings] | None = None  # (base, overrides, effective)

    def overrides(self) -> dict[str, str]:
        """The stored overrides, read again once the last read is `cache_s` old."""
        return dict(self._current())

    def effective(self, settings: Settings) -> Settings:
        """`settings` with the overrides applied; a stored value that no longer parses is skipped."""
        current = self._current()
        applied = self._applied
        if applied is not None and applied[0] is settings and applied[1] is current:
            return applied[2]
        changes: dict[str, Any] = {}
        for key, raw in current.items():
            try:
                changes[key] = parsed(key, raw, settings)
            except InvalidInput as exc:
                log.warning("config_override_ignored", key=key, reason=exc.message)
        result = settings.with_(**changes) if changes else settings
        self._applied = (settings, current, result)
        return result

    def set(self, key: str, value: str, *, base: Settings, by: str, now: datetime) -> Change:
        """Check, store and record one change; this process sees it at once, others within `cache_s`."""
        new = canonical(key, value, base)
        with self._engine.begin() as conn:
            stored = conn.execute(
                select(config_overrides.c.value).where(config_overrides.c.key == key).with_for_update()
            ).scalar_one_or_none()
            old = stored if stored is not None and _valid(key, stored, base) else str(getattr(base, key))
            conn.execute(_upsert(conn, {"key": key, "value": new, "updated_at": now}))
            conn.execute(
                insert(config_changes).values(key=key, old_value=old, new_value=new, changed_by=by, changed_at=now)
            )
        self._loaded = None
        log.info("config_changed", key=key, old=old, new=new, changed_by=by)
        return Change(key, old, new, by, now)

    def history(self, key: str | None = None, *, limit: int = 100) -> list[Change]:
        """Recorded changes, newest first."""
        query = select(config_changes).order_by(config_changes.c.changed_at.desc(), config_changes.c.id.desc())
        if key is not None:
            query = query.where(config_changes.c.key == key)
        with self._engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [Change(r["key"], r["old_value"], r["new_value"], r["changed_by"], r["changed_at"]) for r in rows]

    def _current(self) -> dict[str, str]:
        now = self._clock()
        loaded = self._loaded
        if loaded is not None and now - loaded[0] < self._cache_s:
            return loaded[1]
        with self._engine.connect() as conn:
            rows = conn.execute(select(config_overrides.c.key, config_overrides.c.value)).all()
        values = {row.key: row.value for row in rows if row.key in ADJUSTABLE}
        self._loaded = (now, values)
        return values


def canonical(key: str, value: str, base: Settings) -> str:
    """The text stored for `value`: checked, trimmed, numbers written the way Python writes them."""
    typed = parsed(key, value, base)
    return typed if isinstance(typed, str) else str(typed)


def parsed(key: str, value: str, base: Settings) -> Any:
    """`value` read as setting `key` (InvalidInput naming `key` or `value` when it cannot be)."""
    if key not in ADJUSTABLE:
        raise InvalidInput("key", f"{key!r} cannot be changed here; these can: {', '.join(sorted(ADJUSTABLE))}")
    text = value.strip()
    if not text:
        raise InvalidInput("value", f"{key} needs a value")
    try:
        typed = getattr(Settings.from_env({key.upper(): text}), key)
        CHECKS.get(key, _positive)(typed, base)
    except (SettingsError, ValueError) as exc:
        raise InvalidInput("value", f"{key}: {exc}") from exc
    return typed


def _valid(key: str, value: str, base: Settings) -> bool:
    try:
        parsed(key, value, base)
    except InvalidInput:
        return False
    return True


def _positive(value: int, _base: Settings) -> None:
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")


def _table(minimum: int) -> Callable[[str, Settings], None]:
    kinds = {str(k) for k in JobKind} | {"*"}

    def check(text: str, _base: Settings) -> None:
        table = PatternTable.parse(text, int)
        if not table.entries:
            raise ValueError("needs at least one pattern=value")
        for pattern, number in table.entries.items():
            segments = pattern.split("/")
            if segments[0] not in kinds or not all(segments):
                raise ValueError(f"{pattern!r} does not start with a job kind ({', '.join(sorted(kinds))})")
            if number < minimum:
                raise ValueError(f"{pattern}={number}: values are at least {minimum}")

    return check


def _plans(text: str, _base: Settings) -> None:
    plans = parse_plans(text)
    if "free" not in plans:
        raise ValueError("the `free` plan (what non-members get) must stay")
    for plan in plans.values():
        if plan.concurrency < 1 or plan.batch < 1:
            raise ValueError(f"plan {plan.name}: concurrency and batch are at least 1")


def _poll_schedule(text: str, base: Settings) -> None:
    schedule = PollSchedule.parse(text, max_polls=base.poll_max)
    if not all(math.isfinite(n) for step in schedule.steps for n in step):
        raise ValueError("poll schedule numbers are finite")


CHECKS: Final[Mapping[str, Callable[[Any, Settings], None]]] = {
    "prices": _table(minimum=0),
    "deadlines": _table(minimum=1),
    "plans": _plans,
    **dict.fromkeys(POLL_SCHEDULES, _poll_schedule),
}


def _upsert(conn: Connection, row: Mapping[str, object]) -> Insert:
    key = [config_overrides.c.key]
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(config_overrides).values(**row)
        return pg.on_conflict_do_update(
            index_elements=key, set_={"value": pg.excluded.value, "updated_at": pg.excluded.updated_at}
        )
    if conn.dialect.name == "sqlite":
        lite = sqlite.insert(config_overrides).values(**row)
        return lite.on_conflict_do_update(
            index_elements=key, set_={"value": lite.excluded.value, "updated_at": lite.excluded.updated_at}
        )
    raise NotImplementedError(f"no upsert for {conn.dialect.name}")
