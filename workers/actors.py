"""Imports every actor module, so that `workers.broker.install()` sees every actor."""

from workers import accounts, archiving, generation, maintenance, moderation, polling, refunds

__all__ = ["accounts", "archiving", "generation", "maintenance", "moderation", "polling", "refunds"]
