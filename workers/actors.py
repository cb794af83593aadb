"""Declares every actor (importing their modules), so that `workers.broker.install()` binds them all.

Worker processes and tests import this before installing a broker; the API sends by name
(workers.messages) and needs none of it.
"""

from workers import accounts, archiving, generation, maintenance, moderation, polling, refunds, webhooks

__all__ = ["accounts", "archiving", "generation", "maintenance", "moderation", "polling", "refunds", "webhooks"]
