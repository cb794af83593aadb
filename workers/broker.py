"""Where actors bind, and how each run gets the process's runtime.

Actors bind to a broker when decorated, and decorating must not do I/O or read settings, so every
actor is declared on a placeholder `StubBroker`; `install()` moves them all to the real broker at
boot (a RedisBroker in processes, a StubBroker or RedisBroker in tests). An actor function takes
the runtime first: the decorator passes the one installed at boot, so helpers take `rt` as an
argument and nothing looks it up. Nothing here imports an actor module (`workers.actors` does).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Middleware, Retries, ShutdownNotifications, TimeLimit

from workers import runtime

P = ParamSpec("P")
R = TypeVar("R")

QUEUES: Final = ("moderation", "generation", "polling", "archiving", "refunds", "maintenance", "webhooks")
NAMESPACE: Final = "genq"

ACTORS: list[dramatiq.Actor[Any, Any]] = []


def middleware() -> list[Middleware]:
    """Dramatiq's own retries only catch the unexpected (a database blip): vendor errors are
    handled inside the actors, and maintenance re-drives whatever is left stranded."""
    return [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Retries(max_retries=3, min_backoff=1_000, max_backoff=30_000),
    ]


_placeholder = StubBroker(middleware=middleware())


def actor(
    *, queue_name: str, **options: Any
) -> Callable[[Callable[Concatenate[runtime.Runtime, P], R]], dramatiq.Actor[P, R]]:
    if queue_name not in QUEUES:
        raise ValueError(f"unknown queue {queue_name}")

    def decorate(fn: Callable[Concatenate[runtime.Runtime, P], R]) -> dramatiq.Actor[P, R]:
        name = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return fn(runtime.current(), *args, **kwargs)

        declared: dramatiq.Actor[P, R] = dramatiq.actor(
            actor_name=name, queue_name=queue_name, broker=_placeholder, **options
        )(run)
        ACTORS.append(declared)
        return declared

    return decorate


def redis_broker(url: str) -> RedisBroker:
    return RedisBroker(url=url, namespace=NAMESPACE, middleware=middleware())  # type: ignore[no-untyped-call]


def stub_broker() -> StubBroker:
    return StubBroker(middleware=middleware())


def install(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Bind every declared actor (import `workers.actors` first to declare them all) and every queue
    to `broker`, and make it the global one. The API declares no actors: it sends by name."""
    for declared in ACTORS:
        declared.broker = broker
        broker.declare_actor(declared)
    for queue in QUEUES:
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker
