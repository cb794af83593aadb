"""Orders and payment notifications (SPEC §4, VENDORS §8).

`POST /v1/orders` creates a pending order and the channel's payment parameters (WeChat Pay's
native `code_url`, Alipay's face-to-face `qr_code`). The channels' notifications are verified by
their own schemes, checked against the order (amount, app), and grant once: the order's move to
`paid` is a compare-and-set and each channel transaction id is unique. `refresh` asks the channel
itself, for a notification that never came; it grants through the same path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import httpx
import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, RawBody

from api import docs
from api.auth import CurrentUser
from domain import plans as plan_rules
from domain.errors import ChannelUnavailable, InvalidInput, NotFound
from infra.orders import AmountMismatch, Order
from infra.paging import is_id
from infra.resources import Resources
from infra.settings import Settings
from vendors import alipay, wechatpay
from vendors.base import VendorError

log = structlog.get_logger()


@dataclass
class Channels:
    """The payment channels this deployment has credentials for."""

    settings: Settings
    wechat: wechatpay.WechatPayClient | None
    wechat_keys: dict[str, RSAPublicKey]
    alipay: alipay.AlipayClient | None
    alipay_key: RSAPublicKey | None

    @classmethod
    def from_settings(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Channels:
        timeout = httpx.Timeout(settings.vendor_timeout_s, connect=5.0)
        wechat, wechat_keys = None, {}
        if settings.wechatpay_mchid and settings.wechatpay_private_key and settings.wechatpay_public_key:
            wechat_keys = {settings.wechatpay_public_key_id: _public(settings.wechatpay_public_key)}
            wechat = wechatpay.WechatPayClient(
                httpx.Client(base_url=settings.wechatpay_base_url, timeout=timeout, transport=transport),
                mchid=settings.wechatpay_mchid,
                appid=settings.wechatpay_appid,
                serial_no=settings.wechatpay_serial_no,
                private_key=_private(settings.wechatpay_private_key.reveal()),
                public_keys=wechat_keys,
            )
        ali, ali_key = None, None
        if settings.alipay_app_id and settings.alipay_private_key and settings.alipay_public_key:
            ali_key = _public(settings.alipay_public_key)
            ali = alipay.AlipayClient(
                httpx.Client(base_url=settings.alipay_base_url, timeout=timeout, transport=transport),
                app_id=settings.alipay_app_id,
                private_key=_private(settings.alipay_private_key.reveal()),
                alipay_public_key=ali_key,
            )
        return cls(settings, wechat, wechat_keys, ali, ali_key)

    def notify_url(self, channel: str) -> str:
        base = self.settings.public_base_url or f"http://{self.settings.api_host}:{self.settings.api_port}"
        return f"{base.rstrip('/')}/v1/payments/{channel}/notify"


def _private(pem: str) -> RSAPrivateKey:
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("an RSA private key is expected")
    return key


def _public(pem: str) -> RSAPublicKey:
    key = load_pem_public_key(pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise ValueError("an RSA public key is expected")
    return key


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    plan: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    channel: Literal["wechat", "alipay"]


class OrderOut(msgspec.Struct):
    id: str
    plan: str
    channel: str
    amount_fen: int
    credits: int
    status: str
    payment: dict[str, Any] | None
    created_at: datetime
    paid_at: datetime | None

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            order.id,
            order.plan,
            order.channel,
            order.amount_fen,
            order.credits,
            order.status,
            order.payment,
            order.created_at,
            order.paid_at,
        )


User = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]


class OrdersController(Controller):
    path = "/v1/orders"
    tags = ["membership"]

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        responses=docs.errors(
            401, (502, "`payment_channel_unavailable`: the channel did not answer usably; the order failed.")
        ),
    )
    def create_order(
        self, data: JSONBody[OrderIn], user: User, resources: Res, channels: NamedDependency[Channels]
    ) -> OrderOut:
        """A pending order for a plan, with what the client needs to pay it on the channel."""
        plan = plan_rules.purchasable(plan_rules.parse_plans(resources.effective().plans), data.plan)
        client = channels.wechat if data.channel == "wechat" else channels.alipay
        if client is None:
            raise InvalidInput("channel", f"{data.channel} payments are not configured here")
        order = resources.membership.create_order(user.id, plan, data.channel, now=datetime.now(UTC))
        description = f"genq {plan.name} membership"
        try:
            if isinstance(client, wechatpay.WechatPayClient):
                payment: dict[str, Any] = client.prepay(
                    order.id, plan.price_fen, description, channels.notify_url("wechat")
                )
            else:
                yuan = Decimal(plan.price_fen) / 100
                payment = client.precreate(order.id, yuan, description, channels.notify_url("alipay"))
        except VendorError as exc:  # nothing can be paid: the order ends failed, not pending for ever
            resources.membership.failed(order.id)
            raise ChannelUnavailable(f"{data.channel} did not answer usably; try again", code=exc.code) from exc
        resources.membership.set_payment(order.id, payment)
        return OrderOut.of(resources.membership.order(order.id))

    @get("/{order_id:str}", sync_to_thread=True, responses=docs.errors(401, 404))
    def read_order(self, order_id: FromPath[str], user: User, resources: Res) -> OrderOut:
        return OrderOut.of(_own(resources, user, order_id))

    @post("/{order_id:str}/refresh", status_code=200, sync_to_thread=True, responses=docs.errors(401, 404))
    def refresh_order(
        self, order_id: FromPath[str], user: User, resources: Res, channels: NamedDependency[Channels]
    ) -> OrderOut:
        """Ask the channel about an order whose notification never came; grants at most once."""
        order = _own(resources, user, order_id)
        if order.status == "pending":
            _recheck(order, resources, channels)
        return OrderOut.of(resources.membership.order(order_id))


def _own(resources: Resources, user: CurrentUser, order_id: str) -> Order:
    if not is_id(order_id):
        raise NotFound(f"no order {order_id!r}", order_id=order_id)
    order = resources.membership.order(order_id)
    if order.user_id != user.id:
        raise NotFound(f"no order {order_id}", order_id=order_id)
    return order


def _recheck(order: Order, resources: Resources, channels: Channels) -> None:
    now, days = datetime.now(UTC), resources.effective().membership_days
    try:
        if order.channel == "wechat" and channels.wechat is not None:
            tx = channels.wechat.query(order.id)
            if tx is not None and tx.trade_state == "SUCCESS" and tx.transaction_id:
                resources.membership.paid(
                    order.id,
                    channel="wechat",
                    transaction_id=tx.transaction_id,
                    amount_fen=tx.total,
                    now=now,
                    days=days,
                )
        elif order.channel == "alipay" and channels.alipay is not None:
            trade = channels.alipay.query(order.id)
            if trade is not None and trade.trade_status in alipay.PAID:
                resources.membership.paid(
                    order.id,
                    channel="alipay",
                    transaction_id=trade.trade_no,
                    amount_fen=_fen(trade.total_amount),
                    now=now,
                    days=days,
                )
    except VendorError as exc:
        log.warning("order_recheck_failed", order_id=order.id, error=exc.code)


def _fen(yuan: Decimal) -> int:
    return int((yuan * 100).to_integral_value())


@post("/v1/payments/wechat/notify", tags=["payments"], sync_to_thread=True)
def wechat_notify(
    request: Request[Any, Any, Any], body: RawBody, resources: Res, channels: NamedDependency[Channels]
) -> Response[Any]:
    """WeChat Pay v3: 204 once handled (granted, or nothing to do); 4xx/5xx + FAIL to be sent again."""
    if channels.wechat is None:
        return _wechat_reply(wechatpay.nack("wechat pay is not configured", status=404))
    try:
        tx = wechatpay.parse_notification(
            dict(request.headers),
            body,
            public_keys=channels.wechat_keys,
            api_v3_key=resources.settings.wechatpay_api_v3_key.reveal(),
            now=time.time(),
            mchid=resources.settings.wechatpay_mchid,
            appid=resources.settings.wechatpay_appid or None,
        )
    except wechatpay.NotificationRejected as exc:
        log.warning("payment_notification_rejected", channel="wechat", reason=exc.reason)
        return _wechat_reply(wechatpay.nack(exc.reason, status=401))
    if tx.trade_state != "SUCCESS" or not tx.transaction_id:
        return _wechat_reply(wechatpay.ACK)
    return _wechat_reply(_grant(resources, tx.out_trade_no, "wechat", tx.transaction_id, tx.total))


def _grant(resources: Resources, order_id: str, channel: str, transaction_id: str, amount_fen: int) -> wechatpay.Reply:
    try:
        granted = resources.membership.paid(
            order_id,
            channel=channel,
            transaction_id=transaction_id,
            amount_fen=amount_fen,
            now=datetime.now(UTC),
            days=resources.effective().membership_days,
        )
    except AmountMismatch as exc:
        log.error("payment_amount_mismatch", channel=channel, order_id=order_id, reported=amount_fen)
        return wechatpay.nack(exc.message, status=400)
    except NotFound:
        log.error("payment_for_unknown_order", channel=channel, order_id=order_id)
        return wechatpay.nack("unknown order", status=404)
    log.info("payment_granted" if granted else "payment_repeated", channel=channel, order_id=order_id)
    return wechatpay.ACK


def _wechat_reply(reply: wechatpay.Reply) -> Response[Any]:
    return Response(reply.body or None, status_code=reply.status, media_type=reply.content_type)


@post("/v1/payments/alipay/notify", tags=["payments"], sync_to_thread=True, media_type=MediaType.TEXT)
def alipay_notify(body: RawBody, resources: Res, channels: NamedDependency[Channels]) -> Response[str]:
    """Alipay: exactly `success` once handled; anything else and Alipay sends it again."""
    form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    if channels.alipay_key is None:
        return Response(alipay.NACK, status_code=404, media_type=MediaType.TEXT)
    try:
        trade = alipay.parse_notify(
            form, alipay_public_key=channels.alipay_key, app_id=resources.settings.alipay_app_id
        )
    except alipay.NotifyRejected as exc:
        log.warning("payment_notification_rejected", channel="alipay", reason=exc.reason)
        return Response(alipay.NACK, status_code=400, media_type=MediaType.TEXT)
    if trade.trade_status == "TRADE_CLOSED":
        resources.membership.failed(trade.out_trade_no)
        return Response(alipay.ACK, media_type=MediaType.TEXT)
    if trade.trade_status not in alipay.PAID:
        return Response(alipay.ACK, media_type=MediaType.TEXT)
    reply = _grant(resources, trade.out_trade_no, "alipay", trade.trade_no, _fen(trade.total_amount))
    ok = reply.status < 300
    return Response(
        alipay.ACK if ok else alipay.NACK, status_code=200 if ok else reply.status, media_type=MediaType.TEXT
    )
