"""Every vendor simulator on loopback, and the settings that point genq's clients at them.

Credentials: the ones configured, or throwaway ones made here (a simulator accepts whatever it is
told to). Each simulator is the same `handle(httpx.Request)` object the tests use, served by
uvicorn in a thread of this process.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from infra.serving import ServerThread
from infra.settings import Settings
from vendors.sim.common import asgi_app
from vendors.sim.douyin import DouyinSim
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.kie import KieSim
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.samples import SampleImages
from vendors.sim.tencent_ci import TencentCiSim
from vendors.sim.wechat import WechatSim


@dataclass
class Simulators:
    servers: dict[str, ServerThread]
    env: dict[str, str]  # the settings that point every vendor client at its simulator
    kie: KieSim
    wechat: WechatSim
    stopped: list[str] = field(default_factory=list)

    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.servers.items()}

    def stop(self) -> None:
        self.kie.stop_ticker()
        self.wechat.stop_ticker()
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
    handlers = {
        "runninghub": (RunningHubSim(api_keys=[rh_key]).handle, settings.sim_runninghub_port),
        "hunyuan3d": (Hunyuan3DSim(credentials={secret_id: secret_key}).handle, settings.sim_hunyuan3d_port),
        "kie": (kie.handle, settings.sim_kie_port),
        "ci": (TencentCiSim(credentials={secret_id: secret_key}).handle, settings.sim_ci_port),
        "samples": (SampleImages().handle, settings.sim_samples_port),
        "wechat": (wechat.handle, settings.sim_wechat_port),
        "douyin": (DouyinSim(appid=dy_appid, secret=dy_secret).handle, settings.sim_douyin_port),
    }
    servers: dict[str, ServerThread] = {}
    try:
        for name, (handle, port) in handlers.items():
            servers[name] = ServerThread(asgi_app(handle), host=host, port=port).start()
    except RuntimeError:
        for server in servers.values():
            server.stop()
        raise
    kie.start_ticker()  # delivers due callbacks
    wechat.start_ticker()  # delivers due verdict pushes
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
    }
    return Simulators(servers, env, kie, wechat)
