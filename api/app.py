"""The Litestar application: thin handlers over the shared data layer."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.handlers import BaseRouteHandler
from litestar.params import BodyKwarg

from api import docs, errors, ops, web
from api.accounts import AuthController, create_upload, list_plans, membership
from api.admin import AdminController
from api.auth import current_user
from api.batches import BatchesController
from api.callbacks import ModerationPlatforms, kie_callback, moderation_callback
from api.events import job_events
from api.jobs import JobsController, json_only
from api.keys import KeysController
from api.payments import Channels, OrdersController, alipay_notify, wechat_notify
from api.pricing import pricing
from api.webhooks import WebhooksController
from domain.pricing import PriceList
from infra.catalog import price_list
from infra.config_store import ConfigStore
from infra.resources import Resources
from infra.tokens import RedisTokenCache
from workers import messages
from workers.boot import moderation_platforms

# A 6 MB image as base64 is 8 MB; room for a few of them (3D views) plus the JSON around them.
MAX_BODY_BYTES = 24 * 1024 * 1024


def create_app(resources: Resources, *, channels: Channels | None = None) -> Litestar:
    """The API over `resources`; `channels` replaces the payment clients (tests: the simulators)."""

    def provide_resources() -> Resources:
        return resources

    def provide_prices() -> PriceList:
        return price_list(resources.effective())  # an admin's price change counts for the next job

    def provide_config() -> ConfigStore:
        return resources.config

    channels = channels or Channels.from_settings(resources.settings)
    resources.jobs.announce_with(messages.webhooks)  # deliveries its moves (creates, cancels) write

    def provide_channels() -> Channels:
        return channels

    platforms = ModerationPlatforms(moderation_platforms(resources.settings, RedisTokenCache(resources.redis)))

    def provide_moderation_platforms() -> ModerationPlatforms:
        return platforms

    return Litestar(
        route_handlers=[
            JobsController,
            job_events,
            KeysController,
            WebhooksController,
            BatchesController,
            AdminController,
            AuthController,
            OrdersController,
            list_plans,
            membership,
            create_upload,
            wechat_notify,
            alipay_notify,
            pricing,
            kie_callback,
            moderation_callback,
            ops.healthz,
            ops.readyz,
            ops.metrics_endpoint,
            docs.assets_router(),
            *web.routers(resources),  # the workbench (/app) and the console (/console): api/web/
        ],
        dependencies={
            "resources": Provide(provide_resources, sync_to_thread=False),
            "prices": Provide(provide_prices, sync_to_thread=False),
            "moderation_platforms": Provide(provide_moderation_platforms, sync_to_thread=False),
            "channels": Provide(provide_channels, sync_to_thread=False),
            "config": Provide(provide_config, sync_to_thread=False),
            "user": Provide(current_user, sync_to_thread=True),
        },
        guards=[json_bodies_only],
        exception_handlers=errors.HANDLERS,
        openapi_config=docs.openapi_config(),  # served whole from here: renders offline
        template_config=web.template_config(),
        before_request=_clear_log_context,
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )


def json_bodies_only(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every route that reads a JSON body (`data`) answers 415 to a body in another format, before
    reading it; the callbacks and payment notifications read their raw bodies themselves."""
    if _reads_json(handler):
        json_only(connection, handler)


def _reads_json(handler: BaseRouteHandler) -> bool:
    data = handler.parsed_fn_signature.parameters.get("data")
    body = data.kwarg_definition if data is not None else None
    return data is not None and (not isinstance(body, BodyKwarg) or body.media_type == RequestEncodingType.JSON)


def _clear_log_context(_: Request[Any, Any, Any]) -> None:
    import structlog

    structlog.contextvars.clear_contextvars()
