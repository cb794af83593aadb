"""Alembic: a database made by the previous head upgrades with its data, and downgrades back.

On SQLite always, and on PostgreSQL when DATABASE_URL names one (in a database of its own).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from infra.migrate import downgrade, upgrade
from infra.settings import Settings

PREVIOUS = "0001"
BACKENDS = ["sqlite"] + (["postgresql"] if Settings.from_env().sqlalchemy_url.startswith("postgresql") else [])


@pytest.fixture(params=BACKENDS)
def blank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    server = create_engine(Settings.from_env().sqlalchemy_url, isolation_level="AUTOCOMMIT")
    name = f"genq_mig_{uuid.uuid4().hex[:10]}"
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine = create_engine(server.url.set(database=name))
    yield engine
    engine.dispose()
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    server.dispose()


def _seed(engine: Engine) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, phone, balance, created_at) VALUES ('u1', '1', 4, :t)"), {"t": now})
        conn.execute(
            text(
                "INSERT INTO jobs (id, user_id, kind, status, input, price, vendor, model, polls, deadline_at,"
                " created_at, updated_at) VALUES ('j1', 'u1', 'video', 'queued', '{}', 15, 'kie', 'sora-2', 0,"
                " :t, :t, :t)"
            ),
            {"t": now},
        )


def test_head_upgrades_the_previous_head_keeping_data_and_downgrades_back(blank: Engine) -> None:
    upgrade(blank, PREVIOUS)
    _seed(blank)

    upgrade(blank)
    tables, columns = inspect(blank).get_table_names(), [c["name"] for c in inspect(blank).get_columns("users")]
    with blank.connect() as conn:
        kept = conn.execute(text("SELECT status, price FROM jobs WHERE id = 'j1'")).one()
    with pytest.raises(IntegrityError), blank.begin() as conn:  # statuses are the known ones now
        conn.execute(text("UPDATE jobs SET status = 'exploded' WHERE id = 'j1'"))
    downgrade(blank, PREVIOUS)
    after = inspect(blank)

    assert "moderation_audits" in tables and "moderation_platform" in columns
    assert tuple(kept) == ("queued", 15)
    assert "moderation_audits" not in after.get_table_names()
    assert "moderation_platform" not in [c["name"] for c in after.get_columns("users")]
    with blank.connect() as conn:
        assert conn.execute(text("SELECT status FROM jobs WHERE id = 'j1'")).scalar_one() == "queued"
    upgrade(blank)  # and up again
