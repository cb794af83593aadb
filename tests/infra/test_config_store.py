"""Admin overrides over a real database: checked, recorded, and seen by every process without a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, insert, select

from domain.errors import InvalidInput
from domain.jobs import JobKind
from domain.plans import parse_plans
from infra.accounts import Accounts
from infra.catalog import poll_schedule, price_list, slot_limits
from infra.config_store import ADJUSTABLE, ConfigStore
from infra.db import config_changes, config_overrides
from infra.settings import Settings

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def admin_id(db: Engine) -> str:
    return Accounts(db).create_user("13900000000", 0, now=AT, role="admin").user_id


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings.with_(runninghub_concurrency=3)


def recorded(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        changes = conn.execute(select(func.count()).select_from(config_changes)).scalar_one()
        overrides = conn.execute(select(func.count()).select_from(config_overrides)).scalar_one()
    return int(changes), int(overrides)


def test_a_limit_change_is_recorded_and_reaches_another_process_when_its_cache_lapses(
    db: Engine, admin_id: str, settings: Settings
) -> None:
    clock = Clock()
    here, elsewhere = ConfigStore(db, cache_s=1.0), ConfigStore(db, cache_s=1.0, clock=clock)
    assert elsewhere.effective(settings).runninghub_concurrency == 3

    change = here.set("runninghub_concurrency", "1", base=settings, by=admin_id, now=AT)

    assert (change.key, change.old_value, change.new_value, change.changed_by) == (
        "runninghub_concurrency",
        "3",
        "1",
        admin_id,
    )
    assert change.changed_at == AT
    assert here.history() == [change]
    assert here.effective(settings).runninghub_concurrency == 1
    clock.now += 0.5
    assert elsewhere.effective(settings).runninghub_concurrency == 3  # still inside its cache time
    clock.now += 0.5
    effective = elsewhere.effective(settings)
    assert effective.runninghub_concurrency == 1
    assert slot_limits(effective)["runninghub:pose12"] == 1
    assert elsewhere.overrides() == {"runninghub_concurrency": "1"}


def test_a_price_change_changes_the_quote(db: Engine, admin_id: str, settings: Settings) -> None:
    store = ConfigStore(db)
    before = price_list(store.effective(settings)).quote(JobKind.MODEL_POSE12, {})

    store.set("prices", "basic_clean=2,model_pose12=7,model_3d=5", base=settings, by=admin_id, now=AT)

    after = price_list(store.effective(settings))
    assert before.price == 1
    assert after.quote(JobKind.MODEL_POSE12, {}).price == 7
    assert after.quote(JobKind.MODEL_POSE12, {}).deadline_s == before.deadline_s
    with pytest.raises(InvalidInput):
        after.quote(JobKind.VIDEO, {"model": "sora-2", "resolution": "720p", "duration": 10})  # priced out


def test_plans_and_poll_schedules_apply_as_their_parsers_read_them(
    db: Engine, admin_id: str, settings: Settings
) -> None:
    store = ConfigStore(db)

    store.set("plans", "free:0:0:2:5,pro:5000:80:4:20", base=settings, by=admin_id, now=AT)
    store.set("poll_schedule_video_1080p", "0:7,100:9", base=settings, by=admin_id, now=AT)

    effective = store.effective(settings)
    assert parse_plans(effective.plans)["pro"].price_fen == 5000
    assert parse_plans(effective.plans)["free"].concurrency == 2
    schedule = poll_schedule(effective, JobKind.VIDEO, {"model": "sora-2-pro", "resolution": "1080p", "duration": 15})
    assert (schedule.interval(0), schedule.interval(150)) == (7, 9)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("prices", "basic_clean=one", "value"),
        ("prices", "basic_clean", "value"),
        ("prices", "basic_clean=-1", "value"),
        ("prices", "hologram=3", "value"),
        ("prices", "", "value"),
        ("deadlines", "basic_clean=0", "value"),
        ("runninghub_concurrency", "-1", "value"),
        ("runninghub_concurrency", "0", "value"),
        ("kie_concurrency_sora_2", "2.5", "value"),
        ("poll_schedule_image", "5:2,30:5", "value"),
        ("poll_schedule_image", "0:2,0:5", "value"),
        ("poll_schedule_image", "0:2,30", "value"),
        ("poll_schedule_3d", "0:nan", "value"),
        ("plans", "free:0:0:1", "value"),
        ("plans", "pro:9900:100:3:15", "value"),
        ("plans", "free:0:0:0:5", "value"),
        ("jwt_secret", "hunter2", "key"),
        ("database_url", "sqlite:///elsewhere.db", "key"),
        ("no_such_setting", "1", "key"),
    ],
)
def test_an_invalid_change_names_the_field_and_records_nothing(
    db: Engine, admin_id: str, settings: Settings, key: str, value: str, field: str
) -> None:
    store = ConfigStore(db)

    with pytest.raises(InvalidInput) as raised:
        store.set(key, value, base=settings, by=admin_id, now=AT)

    assert raised.value.field == field
    assert recorded(db) == (0, 0)
    assert store.effective(settings) == settings


def test_history_is_newest_first_and_each_old_value_is_the_one_before(
    db: Engine, admin_id: str, settings: Settings
) -> None:
    store = ConfigStore(db)

    store.set("runninghub_concurrency", "1", base=settings, by=admin_id, now=AT)
    store.set("ci_concurrency", "4", base=settings, by=admin_id, now=AT + timedelta(minutes=1))
    store.set("runninghub_concurrency", " 05 ", base=settings, by=admin_id, now=AT + timedelta(minutes=2))

    assert [(c.key, c.old_value, c.new_value) for c in store.history()] == [
        ("runninghub_concurrency", "1", "5"),
        ("ci_concurrency", "10", "4"),
        ("runninghub_concurrency", "3", "1"),
    ]
    assert [c.new_value for c in store.history("runninghub_concurrency", limit=1)] == ["5"]
    assert store.overrides() == {"runninghub_concurrency": "5", "ci_concurrency": "4"}
    assert recorded(db) == (3, 2)


def test_a_stored_value_that_no_longer_parses_is_skipped_not_fatal(db: Engine, settings: Settings) -> None:
    with db.begin() as conn:
        conn.execute(insert(config_overrides).values(key="hunyuan3d_concurrency", value="many", updated_at=AT))
        conn.execute(insert(config_overrides).values(key="kie_concurrency_sora_2", value="2", updated_at=AT))
        conn.execute(insert(config_overrides).values(key="retired_setting", value="1", updated_at=AT))

    effective = ConfigStore(db).effective(settings)

    assert effective.hunyuan3d_concurrency == settings.hunyuan3d_concurrency
    assert effective.kie_concurrency_sora_2 == 2


def test_every_adjustable_key_accepts_its_own_default(db: Engine, admin_id: str) -> None:
    defaults = Settings()
    store = ConfigStore(db)

    for key in sorted(ADJUSTABLE):
        store.set(key, str(getattr(defaults, key)), base=defaults, by=admin_id, now=AT)

    assert store.effective(defaults) == defaults
    assert recorded(db) == (len(ADJUSTABLE), len(ADJUSTABLE))
