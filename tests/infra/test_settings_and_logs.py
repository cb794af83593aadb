"""Settings come from the environment, typed; secrets never show themselves."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from infra import logging as genq_logging
from infra.settings import Secret, Settings, SettingsError, child_env


def test_settings_read_typed_values_and_keep_defaults() -> None:
    settings = Settings.from_env({"API_PORT": "9001", "AUDIT_ENABLED": "true", "VENDOR_TIMEOUT_S": "2.5"})

    assert (settings.api_port, settings.audit_enabled, settings.vendor_timeout_s) == (9001, True, 2.5)
    assert settings.runninghub_concurrency == 3


def test_a_malformed_value_fails_fast_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="API_PORT"):
        Settings.from_env({"API_PORT": "eighty"})


def test_postgres_urls_get_the_psycopg_driver() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"})

    assert settings.sqlalchemy_url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_secrets_are_masked_when_printed() -> None:
    key = "rh-0123456789abcdefWXYZ"
    settings = Settings.from_env({"RUNNINGHUB_API_KEY": key})

    assert settings.runninghub_api_key.reveal() == key
    assert key not in repr(settings) and key not in str(settings.public())
    assert settings.public()["runninghub_api_key"] == "****WXYZ"
    assert repr(Secret("short")) == "****"


def test_logs_are_json_and_mask_secret_looking_fields() -> None:
    out = io.StringIO()
    genq_logging.configure(Settings(log_format="json"), stream=out)

    structlog.get_logger().info("vendor_call", api_key="rh-0123456789abcdefWXYZ", job_id="j1")
    structlog.reset_defaults()

    event = json.loads(out.getvalue().strip().splitlines()[-1])
    assert event["api_key"] == "****WXYZ" and event["job_id"] == "j1" and event["event"] == "vendor_call"


def test_env_example_lists_every_setting_and_parses() -> None:
    from dataclasses import fields
    from pathlib import Path

    lines = Path(__file__).parents[2].joinpath(".env.example").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    assert set(pairs) == {f.name.upper() for f in fields(Settings)}
    assert Settings.from_env(pairs) == Settings.from_env({})


def test_a_child_process_is_not_put_in_metrics_multiprocess_mode_by_an_empty_directory(tmp_path: Path) -> None:
    """prometheus_client counts PROMETHEUS_MULTIPROC_DIR="" as set and writes counter_<pid>.db files
    into the working directory: a child gets the variable only with a directory in it."""
    assert "PROMETHEUS_MULTIPROC_DIR" not in child_env({"PROMETHEUS_MULTIPROC_DIR": ""})
    assert child_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
