"""Maintenance's settings fail fast: a negative age or interval names its variable (0 turns a task off)."""

from __future__ import annotations

import pytest

from infra.settings import NOT_NEGATIVE, Settings, SettingsError


@pytest.mark.parametrize("name", [name.upper() for name in NOT_NEGATIVE])
def test_a_negative_maintenance_setting_fails_naming_it(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "-1"})


def test_zero_turns_a_task_off_and_is_accepted() -> None:
    settings = Settings.from_env({"JOB_RETENTION_DAYS": "0", "SLOT_RECONCILE_INTERVAL_S": "0"})

    assert (settings.job_retention_days, settings.slot_reconcile_interval_s) == (0, 0.0)
