"""The record of admins' bulk actions on jobs: who did what, when, to how many (like config changes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select

from infra.db import admin_actions


@dataclass(frozen=True)
class AdminAction:
    action: str
    filter: Mapping[str, Any]
    matched: int
    acted: int
    by: str
    at: datetime


class AdminLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, entry: AdminAction) -> None:
        row = {**entry.__dict__, "filter": dict(entry.filter)}
        with self._engine.begin() as conn:
            conn.execute(insert(admin_actions).values(**row))

    def recent(self, *, limit: int = 100) -> list[AdminAction]:
        query = select(admin_actions).order_by(admin_actions.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [AdminAction(r.action, dict(r.filter), r.matched, r.acted, r.by, r.at) for r in conn.execute(query)]
