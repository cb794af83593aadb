"""Alembic environment: the URL and connection come from genq (infra/migrate.py), not an ini file."""

from __future__ import annotations

from alembic import context

from infra.db import metadata

config = context.config
connection = config.attributes.get("connection")


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    if connection is None:
        raise RuntimeError("run migrations through `genq migrate` (infra.migrate), which passes a connection")
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
