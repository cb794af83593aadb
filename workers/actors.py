"""Imports every actor module, so that `workers.broker.install()` sees every actor."""

from workers import archiving, generation, maintenance, moderation, polling, refunds

__all__ = ["archiving", "generation", "maintenance", "moderation", "polling", "refunds"]
