"""Every vendor simulator on loopback, and the settings that point genq's clients at them.

Credentials: the ones configured, or throwaway ones made here (a simulator accepts whatever it is
told to). Each simulator is the same `handle(httpx.Request)` object the tests use, served by
uvicorn in a thread of this process.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from infra.embedded import check_port
from infra.serving import ServerThread
from infra.settings import Settings
from vendors.sim.alipay import AlipaySim
from vendors.sim.common import asgi_app
from vendors.sim.douyin import DouyinSim
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.kie import KieSim
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.samples import SampleImages
from vendors.sim.tencent_ci import TencentCiSim
from vendors.sim.tencent_sms import SmsSim
from vendors.sim.wechat import WechatSim
from vendors.sim.wechatpay import WechatPaySim


@dataclass
class Simulators:
    servers: dict[str, ServerThread]
    env: dict[str, str]  # the settings that point every vendor client at its simulator
    kie: KieSim
    wechat: WechatSim
    tickers: list[Ticking] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.servers.items()}

    def stop(self) -> None:
        for sim in self.tickers:
            sim.stop_ticker()
        for name, server in self.servers.items():
            server.stop()
            self.stopped.append(name)


def start(settings: Settings, host: str = "127.0.0.1") -> Simulators:
    rh_key = settings.runninghub_api_key.reveal() or secrets.token_hex(16)
    secret_id = settings.tencent_secret_id or "AKID" + secrets.token_hex(16)
    secret_key = settings.tencent_secret_key.reveal() or secrets.token_hex(20)
    kie_key = settings.kie_api_key.reveal() or secrets.token_hex(16)
    hmac_key = settings.kie_webhook_hmac_key.reveal() or secrets.token_hex(16)

    kie = KieSim(api_keys=[kie_key], hmac_key=hmac_key)
    api = f"http://{settings.api_host}:{settings.api_port}"
    wx_appid = settings.wechat_appid or "wx" + secrets.token_hex(8)
    wx_secret = settings.wechat_secret.reveal() or secrets.token_hex(16)
    wx_openid = settings.wechat_openid or "o" + secrets.token_hex(14)[:27]
    wx_push = settings.wechat_push_token.reveal() or secrets.token_hex(16)
    wechat = WechatSim(
        appid=wx_appid, secret=wx_secret, push_token=wx_push, push_url=f"{api}/v1/callbacks/moderation/wechat"
    )
    dy_appid = settings.douyin_appid or "tt" + secrets.token_hex(8)
    dy_secret = settings.douyin_secret.reveal() or secrets.token_hex(16)
    sms_app = settings.sms_sdk_app_id or "1400" + str(secrets.randbelow(10**6)).zfill(6)
    sms = SmsSim(sdk_app_id=sms_app, credentials={secret_id: secret_key})
    wxpay = WechatPaySim(mchid=settings.wechatpay_mchid or "1900000109", appid=settings.wechatpay_appid or wx_appid)
    alipay = AlipaySim(app_id=settings.alipay_app_id or "2021" + str(secrets.randbelow(10**12)).zfill(12))
    if settings.sim_auto_pay_s > 0:
        wxpay.configure(auto_pay_after_s=settings.sim_auto_pay_s)
        alipay.configure(auto_pay_after_s=settings.sim_auto_pay_s)
    media = {"media_scale": settings.sim_media_scale}  # outputs as big as the vendors' unless scaled down
    runninghub, hunyuan3d = RunningHubSim(api_keys=[rh_key]), Hunyuan3DSim(credentials={secret_id: secret_key})
    runninghub.configure(**media)
    hunyuan3d.configure(**media)
    kie.configure(**media)
    handlers = {
        "runninghub": (runninghub.handle, settings.sim_runninghub_port),
        "hunyuan3d": (hunyuan3d.handle, settings.sim_hunyuan3d_port),
        "kie": (kie.handle, settings.sim_kie_port),
        "ci": (TencentCiSim(credentials={secret_id: secret_key}).handle, settings.sim_ci_port),
        "samples": (SampleImages().handle, settings.sim_samples_port),
        "wechat": (wechat.handle, settings.sim_wechat_port),
        "douyin": (DouyinSim(appid=dy_appid, secret=dy_secret).handle, settings.sim_douyin_port),
        "sms": (sms.handle, settings.sim_sms_port),
        "wechatpay": (wxpay.handle, settings.sim_wechatpay_port),
        "alipay": (alipay.handle, settings.sim_alipay_port),
    }
    for name, (_, port) in handlers.items():  # before any starts: a taken port names its setting
        check_port(host, port, setting=f"SIM_{name.upper()}_PORT")
    servers: dict[str, ServerThread] = {}
    try:
        for name, (handle, port) in handlers.items():
            servers[name] = ServerThread(asgi_app(handle), host=host, port=port).start()
    except RuntimeError:
        for server in servers.values():
            server.stop()
        raise
    tickers: list[Ticking] = [kie, wechat, wxpay, alipay]
    for sim in tickers:  # deliver due callbacks, pushes and payment notifications
        sim.start_ticker()
    allow = ",".join(filter(None, [settings.fetch_allowlist, f"{host}:{settings.sim_samples_port}"]))
    env = {
        "RUNNINGHUB_BASE_URL": servers["runninghub"].url,
        "RUNNINGHUB_API_KEY": rh_key,
        "HUNYUAN3D_BASE_URL": servers["hunyuan3d"].url,
        "TENCENT_SECRET_ID": secret_id,
        "TENCENT_SECRET_KEY": secret_key,
        "CI_BUCKET_URL": servers["ci"].url,
        "KIE_BASE_URL": servers["kie"].url,
        "KIE_API_KEY": kie_key,
        "KIE_WEBHOOK_HMAC_KEY": hmac_key,
        "KIE_CALLBACK_URL": settings.kie_callback_url or f"{api}/v1/callbacks/kie",
        "FETCH_ALLOWLIST": allow,
        "WECHAT_BASE_URL": servers["wechat"].url,
        "WECHAT_APPID": wx_appid,
        "WECHAT_SECRET": wx_secret,
        "WECHAT_OPENID": wx_openid,
        "WECHAT_PUSH_TOKEN": wx_push,
        "DOUYIN_BASE_URL": servers["douyin"].url,
        "DOUYIN_APPID": dy_appid,
        "DOUYIN_SECRET": dy_secret,
        "SMS_BASE_URL": servers["sms"].url,
        "SMS_SDK_APP_ID": sms_app,
        "SMS_SIGN_NAME": settings.sms_sign_name or "genq",
        "SMS_TEMPLATE_ID": settings.sms_template_id or "1000001",
        "JWT_SECRET": settings.jwt_secret.reveal() or secrets.token_urlsafe(48),
        "PUBLIC_BASE_URL": settings.public_base_url or api,
        "WECHATPAY_BASE_URL": servers["wechatpay"].url,
        "WECHATPAY_MCHID": wxpay.mchid,
        "WECHATPAY_APPID": wxpay.appid,
        "WECHATPAY_SERIAL_NO": wxpay.merchant_serial,
        "WECHATPAY_PRIVATE_KEY": private_pem(wxpay.merchant_private_key),
        "WECHATPAY_PUBLIC_KEY": public_pem(wxpay.public_key),
        "WECHATPAY_PUBLIC_KEY_ID": wxpay.serial,
        "WECHATPAY_API_V3_KEY": wxpay.api_v3_key,
        "ALIPAY_BASE_URL": servers["alipay"].url,
        "ALIPAY_APP_ID": alipay.app_id,
        "ALIPAY_PRIVATE_KEY": private_pem(alipay.app_private_key),
        "ALIPAY_PUBLIC_KEY": public_pem(alipay.alipay_public_key),
    }
    return Simulators(servers, env, kie, wechat, tickers)


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """`env` as `NAME='value'` lines, readable by the owner only, that a POSIX shell loads with
    `set -a; . path; set +a`: each value is quoted for sh, so a multi-line PEM key stays one value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)  # an older file keeps its mode through touch()
    path.write_text("".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items()))


class Ticking(Protocol):
    def start_ticker(self) -> None: ...

    def stop_ticker(self) -> None: ...


def private_pem(key: RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
