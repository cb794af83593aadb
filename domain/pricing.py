"""What a job costs and how long it may take: configuration values, looked up by kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import InvalidInput
from domain.jobs import JobKind


@dataclass(frozen=True)
class Terms:
    price: int  # credits
    deadline_s: int


@dataclass(frozen=True)
class PriceList:
    terms: Mapping[JobKind, Terms]

    def quote(self, kind: JobKind) -> Terms:
        try:
            return self.terms[kind]
        except KeyError:
            raise InvalidInput("kind", f"kind {kind!s} is not offered") from None
