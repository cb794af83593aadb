"""Newest-first pages with an opaque cursor: every list the API serves pages the same way."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, Table, and_, or_

from domain.errors import InvalidInput


def newest_first(
    conn: Connection, query: Select[Any], table: Table, *, limit: int, cursor: str | None
) -> tuple[list[RowMapping], str | None]:
    """Rows of `query` by (created_at, id) descending, and the cursor of the next page (None: last)."""
    created_at, row_id = table.c.created_at, table.c.id
    if cursor:
        at, after = decode_cursor(cursor)
        query = query.where(or_(created_at < at, and_(created_at == at, row_id < after)))
    rows = list(conn.execute(query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)).mappings())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last["created_at"], last["id"])


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor of `encode_cursor` holds; anything else is InvalidInput, before
    it can reach the database (a naive time, a NUL, an id no row could have)."""
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        created_at = datetime.fromisoformat(at)
    except (ValueError, UnicodeError) as exc:  # binascii.Error is a ValueError
        raise InvalidInput("cursor", "cursor is not one this API gave out") from exc
    if created_at.tzinfo is None or not is_id(row_id):
        raise InvalidInput("cursor", "cursor is not one this API gave out")
    return created_at, row_id


ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-")


def is_id(text: str) -> bool:
    """Could a row have this id? Ids fit their 32-character columns and are plain word characters
    (genq makes uuid4().hex); a NUL, a newline or 300 characters never reach the database."""
    return 0 < len(text) <= 32 and ID_CHARS.issuperset(text)
