"""Alembic: a database made by the previous head upgrades with its data, and downgrades back.

On SQLite always, and on PostgreSQL when DATABASE_URL names one (in a database of its own).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from infra.migrate import downgrade, upgrade
from infra.settings import Settings

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


def test_every_revision_upgrades_from_empty_and_downgrades_to_empty(blank: Engine) -> None:
    upgrade(blank)
    downgrade(blank, "base")

    assert inspect(blank).get_table_names() == ["alembic_version"]


REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0012"]
STEPS = list(itertools.pairwise(REVISIONS))


@pytest.mark.parametrize(("previous", "target"), STEPS, ids=[f"{p}->{t}" for p, t in STEPS])
def test_each_revision_upgrades_its_predecessor_keeping_data_and_downgrades_back(
    blank: Engine, previous: str, target: str
) -> None:
    upgrade(blank, previous)
    _seed(blank)
    before = _shape(blank)

    upgrade(blank, target)
    grown = _shape(blank)
    downgrade(blank, previous)

    assert grown != before and _shape(blank) == before
    with blank.connect() as conn:
        assert tuple(conn.execute(text("SELECT status, price FROM jobs WHERE id = 'j1'")).one()) == ("queued", 15)
        assert conn.execute(text("SELECT balance FROM users WHERE id = 'u1'")).scalar_one() == 4


def test_job_statuses_are_checked_from_0002(blank: Engine) -> None:
    upgrade(blank, "0002")
    _seed(blank)

    with pytest.raises(IntegrityError), blank.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = 'exploded' WHERE id = 'j1'"))


def _shape(engine: Engine) -> dict[str, list[str]]:
    found = inspect(engine)
    return {t: sorted(c["name"] for c in found.get_columns(t)) for t in sorted(found.get_table_names())}
