"""The `genq` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from infra.settings import Settings
from workers.broker import QUEUES


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    return int(args.handler(settings, args) or 0)


def _api(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from infra import logging as genq_logging
    from infra.lifetime import exit_with_parent

    genq_logging.configure(settings)
    exit_with_parent(settings.supervisor_pid)
    host, port = args.host or settings.api_host, args.port or settings.api_port
    if args.workers > 1:  # this process binds the socket and supervises; each worker builds its own app
        from api.factory import WORKER_FACTORY

        uvicorn.run(WORKER_FACTORY, factory=True, workers=args.workers, host=host, port=port, log_level="warning")
        return
    from api.factory import build_app

    uvicorn.run(build_app(settings), host=host, port=port, log_level="warning")


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from workers import boot

    boot.run(settings, args.queues, threads=args.threads or settings.worker_threads)


def _worker_health(settings: Settings, args: argparse.Namespace) -> int:
    from workers.health import run_probe

    return run_probe(settings, args, now=datetime.now(UTC).timestamp())


def _sim(settings: Settings, args: argparse.Namespace) -> None:
    from genq import stack

    stack.serve_simulators(settings, host=args.host or settings.sim_host)


def _migrate(settings: Settings, _args: argparse.Namespace) -> None:
    from infra.db import make_engine
    from infra.migrate import upgrade

    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    print(f"database at head: {engine.url.render_as_string(hide_password=True)}")


def _users_create(settings: Settings, args: argparse.Namespace) -> None:
    from infra.accounts import Accounts
    from infra.db import make_engine

    created = Accounts(make_engine(settings)).create_user(
        args.phone,
        args.credits,
        now=datetime.now(UTC),
        role="admin" if args.admin else "user",
        moderation_platform=args.moderation_platform,
    )
    print(json.dumps({"user_id": created.user_id, "api_key": created.api_key}))


def _users_disable(settings: Settings, args: argparse.Namespace) -> int:
    from infra.accounts import Accounts
    from infra.db import make_engine

    accounts = Accounts(make_engine(settings))
    user = accounts.get(args.user) or accounts.by_phone(args.user)
    if user is None or not accounts.set_disabled(user.id, disabled=not args.enable, now=datetime.now(UTC)):
        print(f"no user {args.user}", file=sys.stderr)
        return 1
    print(json.dumps({"user_id": user.id, "disabled": not args.enable}))
    return 0


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from infra.accounts import Accounts
    from infra.db import make_engine

    if not Accounts(make_engine(settings)).revoke_key(args.key_id, now=datetime.now(UTC)):
        print(f"no live key {args.key_id}", file=sys.stderr)
        return 1
    print(json.dumps({"key_id": args.key_id, "revoked": True}))
    return 0


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from genq import stack

    return stack.run(settings)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genq", description="genq: jobs for AI-generation vendors")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument(
        "--workers", type=_positive, default=1, help="API processes sharing the port, each with its own pools (1)"
    )
    api.set_defaults(handler=_api)

    worker = sub.add_parser("worker", help="run a worker pool for one or more queues")
    worker.add_argument("queues", nargs="+", choices=QUEUES, metavar="QUEUE", help=", ".join(QUEUES))
    worker.add_argument("--threads", type=int, help="worker threads in this process (WORKER_THREADS)")
    worker.set_defaults(handler=_worker)

    from workers.health import add_arguments as health_arguments

    health = sub.add_parser("worker-health", help="exit 0 if a worker's heartbeat here is fresh (its probes' check)")
    health_arguments(health)
    health.set_defaults(handler=_worker_health)

    sim = sub.add_parser("sim", help="serve the vendor simulators on loopback")
    sim.add_argument("--host")
    sim.set_defaults(handler=_sim)

    sub.add_parser("migrate", help="bring the database schema to the latest migration").set_defaults(handler=_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(required=True, metavar="ACTION")
    create = users.add_parser("create", help="create a user and print its API key (shown once)")
    create.add_argument("--phone", required=True)
    create.add_argument("--credits", type=int, default=0)
    create.add_argument("--admin", action="store_true", help="give the admin role (the admin API)")
    create.add_argument("--moderation-platform", choices=("wechat", "douyin"), help="this user's moderation platform")
    create.set_defaults(handler=_users_create)
    disable = users.add_parser("disable", help="refuse every key and token of a user (running jobs finish)")
    disable.add_argument("user", help="the user's id or phone")
    disable.add_argument("--enable", action="store_true", help="undo: let the user in again")
    disable.set_defaults(handler=_users_disable)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(required=True, metavar="ACTION")
    revoke = keys.add_parser("revoke", help="revoke an API key by its id (GET /v1/keys lists them)")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys_revoke)

    sub.add_parser("run", help="everything at once, on embedded defaults").set_defaults(handler=_run)
    return parser


if __name__ == "__main__":
    sys.exit(main())
