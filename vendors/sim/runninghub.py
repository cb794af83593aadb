"""RunningHub legacy OpenAPI simulator (VENDORS.md §3.2, §3.4, §3.7, §11).

Every vendor path answers HTTP 200 with `{code, msg, data}`, so `vendors.runninghub` runs against it
unchanged. Tasks move QUEUED -> RUNNING -> SUCCESS|FAILED by the injected `clock` (tests move the
clock instead of sleeping); each task's fate is fixed when it is accepted. Like the real vendor it
never dedupes: every accepted run is a new task, whatever `X-Request-Id` says, and
`created_tasks()` lists them all (orphans of lost answers included). The admin surface lives
under `/__sim/` only. One lock guards all state; the object is safe to share between threads.

Outputs are the model photos `vendors.sim.photos` makes from the task's inputs: the garment at
the first http(s) URL among the node values (fetched when a photo is first downloaded; a drawn
dress when there is none or it cannot be fetched), in the scene and of the category the other
values (the prompt) name. `media_scale` sizes them (1: the vendor's 1024x1536).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import httpx
from PIL import Image

from vendors.sim import photos
from vendors.sim.common import (
    ApiKnobs,
    Call,
    SimulatorBase,
    admin_response,
    bearer,
    check_non_negative,
    check_rate,
    json_response,
    mask_key,
    parse_body,
    roll,
    scrub_body,
    signed_url,
    task_id_of,
)
from vendors.sim.media import CACHE, check_scale, fetch_bytes, open_image
from vendors.sim.samples import garment_photo
from vendors.sim.tasks import TaskBook, TaskQueries, TimedTask

FIXTURE: Final = Path(__file__).parent / "fixtures" / "runninghub_apps.json"
UPLOAD_LIMIT: Final = 30 * 1024 * 1024
MSG: Final[Mapping[int, str]] = {
    0: "success", 301: "PARAMS_INVALID", 415: "TASK_INSTANCE_MAXED", 421: "TASK_QUEUE_MAXED",
    500: "UNKNOWN_ERROR", 802: "APIKEY_UNAUTHORIZED", 803: "APIKEY_INVALID_NODE_INFO",
    804: "APIKEY_TASK_IS_RUNNING", 805: "APIKEY_TASK_STATUS_ERROR", 807: "APIKEY_TASK_NOT_FOUND",
    809: "APIKEY_FILE_SIZE_EXCEEDED", 813: "APIKEY_TASK_IS_QUEUED", 901: "WEBAPP_NOT_EXISTS",
    1003: "REQUEST_RATE_TOO_HIGH",
}  # fmt: skip
_INJECTED_CODE: Final = {"code_500": 500, "busy": 421, "rate": 1003}
_FILE_NAME = re.compile(r"(\d+)/(\d+)\.png")
_SECRET_FIELDS: Final = ("apiKey", "apikey")

Answer = tuple[int, object]
"""What a vendor endpoint answers: envelope `code` and `data`."""


@dataclass(frozen=True)
class RunningHubKnobs(ApiKnobs):
    """Every behaviour switch; `configure(**changes)` or `POST /__sim/config` swaps in a copy."""

    lost_answer_rate: float | Mapping[str, float] = 0.0  # processed, then httpx.ReadTimeout; like failure_rate
    concurrency_limit: int = 1000  # unfinished tasks per api key
    reject_code: int = 421  # or 415 (no free dedicated machine)
    queued_s: float = 1.0
    running_s: float = 5.0
    job_fail_rate: float = 0.0
    job_expiry_s: float = 24 * 3600.0  # after acceptance: outputs/status answer 807
    result_url_ttl_s: float = 3600.0  # `Expires=` of output URLs
    output_count: int | None = None  # overrides the fixture's count
    media_scale: float = 1.0  # output size: 1 = the vendor's (1024x1536 photos)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rate("lost_answer_rate", self.lost_answer_rate)
        check_rate("job_fail_rate", self.job_fail_rate)
        for name in ("concurrency_limit", "queued_s", "running_s", "job_expiry_s", "result_url_ttl_s"):
            check_non_negative(name, getattr(self, name))
        if self.reject_code not in (415, 421):
            raise ValueError("reject_code must be 421 or 415")
        if self.output_count is not None:
            check_non_negative("output_count", self.output_count)
        check_scale(self.media_scale)


@dataclass(frozen=True)
class App:
    """One fixture webapp: the fields each node accepts, and how many PNGs it produces."""

    nodes: Mapping[str, frozenset[str]]
    outputs: int

    def accepts(self, node_id: str, field_name: str) -> bool:
        return field_name in self.nodes.get(node_id, frozenset())


def load_apps(path: Path = FIXTURE) -> dict[str, App]:
    """`{webappId: {"nodes": {nodeId: [fieldName, ...]}, "outputs": n}}` from a JSON fixture."""
    raw = json.loads(path.read_text())
    return {
        webapp_id: App({node: frozenset(names) for node, names in spec["nodes"].items()}, spec["outputs"])
        for webapp_id, spec in raw.items()
    }


@dataclass
class _Task(TimedTask):
    """`fate` is success | fail | reject (audit) | cancel."""

    outputs: int
    webhook_url: str | None
    values: tuple[str, ...] = ()  # the node values it was run with: the outputs derive from them


@dataclass(frozen=True)
class _Req:
    """A parsed vendor call whose api key is known to be valid."""

    http: httpx.Request
    body: Mapping[str, object]
    api_key: str
    now: float

    def task_id(self) -> str:
        return str(self.body.get("taskId", ""))


class RunningHubSim(TaskQueries[_Task], SimulatorBase[RunningHubKnobs]):
    """The simulator; see the module docstring and VENDORS.md §3.7."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str],
        apps_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        fetch: Callable[[str], bytes | None] = fetch_bytes,
    ) -> None:
        super().__init__(RunningHubKnobs(seed=seed), clock)
        self._keys = frozenset(api_keys)
        self._fetch = fetch
        self._garments: dict[str, Image.Image] = {}  # input URL -> the garment cut out of it
        self._garment_lock = threading.Lock()  # not the sim's lock: a fetch must not stall the API
        self._apps = load_apps(apps_path or FIXTURE)
        self._secret = secrets.token_bytes(16)
        self._tasks = TaskBook[_Task](self._lock, clock, lambda: self._knobs.job_expiry_s)
        self._routes: dict[str, Callable[[_Req], Answer]] = {
            "/task/openapi/ai-app/run": self._run_app,
            "/task/openapi/create": self._create,
            "/task/openapi/status": self._status,
            "/task/openapi/outputs": self._outputs,
            "/task/openapi/cancel": self._cancel,
            "/task/openapi/upload": self._upload,
            "/uc/openapi/accountStatus": self._account_status,
            "/task/openapi/getWebhookDetail": self._webhook_detail,
        }

    # --- Python-side conveniences for tests (the rest come from SimulatorBase) ----------------------

    def _forget(self) -> None:
        """Tasks go; keys, knobs and the fixture stay."""
        self._tasks.clear()

    def stats(self) -> dict[str, object]:
        return self._tasks.stats(self._keys)

    # --- HTTP entry point -----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: `/__sim/...` admin, or a vendor path (latency, chaos, envelope)."""
        path = request.url.path
        if path.startswith("/__sim/"):
            return admin_response(self, request)
        route = self._routes.get(path)
        if route is None or request.method != "POST":
            return json_response({"code": 404, "msg": "NOT_FOUND", "data": None}, status=404)
        body = parse_body(request)
        answer = partial(self._answer, route, request, body)
        return self._serve(request, body, answer, lost_answer_rate=self._knobs.lost_answer_rate)

    def _answer(
        self, route: Callable[[_Req], Answer], request: httpx.Request, body: dict[str, object] | None
    ) -> tuple[httpx.Response, str | None]:
        code, data = self._dispatch(route, request, body)
        return json_response({"code": code, "msg": MSG.get(code, "ERROR"), "data": data}), task_id_of(body, data)

    def _dispatch(
        self, route: Callable[[_Req], Answer], request: httpx.Request, body: dict[str, object] | None
    ) -> Answer:
        if body is None:
            return 301, None
        key = _api_key(request, body)
        if key not in self._keys:
            return 802, None
        return route(_Req(request, body, key, self._clock()))

    def _log_call(self, request: httpx.Request, body: Mapping[str, object] | None, task_id: str | None) -> None:
        fields = body or {}
        at, key = self._clock(), mask_key(_api_key(request, fields))
        self._log.record(Call(request.method, request.url.path, at, key, task_id, scrub_body(fields, _SECRET_FIELDS)))

    def _coded_failure(self, kind: str, request: httpx.Request) -> httpx.Response:
        code = _INJECTED_CODE[kind]
        return json_response({"code": code, "msg": MSG[code], "data": None})

    # --- vendor endpoints (called under the lock) -----------------------------------------------

    def _run_app(self, req: _Req) -> Answer:
        nodes = _node_list(req.body.get("nodeInfoList", []))
        if nodes is None or not _instance_type_ok(req.body):
            return 301, None
        app = self._apps.get(str(req.body.get("webappId", "")))
        if app is None:
            return 901, None
        if not all(app.accepts(node_id, name) for node_id, name, _ in nodes):
            return 803, None
        return self._accept(req, [value for _, _, value in nodes], app.outputs)

    def _create(self, req: _Req) -> Answer:
        """A ComfyUI workflow run: no node map to check, one output unless `output_count` says."""
        nodes = _node_list(req.body.get("nodeInfoList", []))
        has_workflow = bool(req.body.get("workflowId") or req.body.get("workflow"))
        if nodes is None or not has_workflow or not _instance_type_ok(req.body):
            return 301, None
        return self._accept(req, [value for _, _, value in nodes], 1)

    def _accept(self, req: _Req, values: list[str], outputs: int) -> Answer:
        knobs = self._knobs
        if self._tasks.unfinished(req.api_key, now=req.now) >= knobs.concurrency_limit:
            return knobs.reject_code, None
        task = _Task(
            task_id=self._tasks.new_id(self._rng),
            account=req.api_key,
            accepted_at=req.now,
            running_at=req.now + knobs.queued_s,
            done_at=req.now + knobs.queued_s + knobs.running_s,
            fate=self._fate(values),
            outputs=outputs if knobs.output_count is None else knobs.output_count,
            webhook_url=_opt_str(req.body.get("webhookUrl")),
            values=tuple(values),
        )
        self._tasks.add(task)
        return 0, _created(task, req)

    def _status(self, req: _Req) -> Answer:
        task = self._find(req)
        return (807, None) if task is None else (0, task.status(req.now, self._knobs.job_expiry_s))

    def _outputs(self, req: _Req) -> Answer:
        task = self._find(req)
        if task is None:
            return 807, None
        status = task.status(req.now, self._knobs.job_expiry_s)
        if status in ("QUEUED", "RUNNING"):
            return (813 if status == "QUEUED" else 804), None
        if status == "FAILED":
            return 805, {"failedReason": _failed_reason(task.fate)}
        return 0, [self._output_item(req, task, index) for index in range(task.outputs)]

    def _cancel(self, req: _Req) -> Answer:
        """Cancelling a finished task is a no-op; an unfinished one ends (as FAILED) right now."""
        task = self._find(req)
        if task is None:
            return 807, None
        if task.status(req.now, self._knobs.job_expiry_s) in ("QUEUED", "RUNNING"):
            task.finish("cancel", req.now)
        return 0, None

    def _upload(self, req: _Req) -> Answer:
        content = req.body.get("file")
        if not isinstance(content, bytes):
            return 301, None
        if len(content) > UPLOAD_LIMIT:
            return 809, None
        name = f"api/{hashlib.sha256(content).hexdigest()}.png"
        return 0, {"fileName": name, "fileType": str(req.body.get("fileType", "image"))}

    def _account_status(self, req: _Req) -> Answer:
        return 0, {
            "remainCoins": "100000",
            "currentTaskCounts": str(self._tasks.unfinished(req.api_key, now=req.now)),
            "remainMoney": "1000.00",
            "currency": "CNY",
            "apiType": "NORMAL",
        }

    def _webhook_detail(self, req: _Req) -> Answer:
        """Webhook delivery is not simulated yet: the record exists, nothing was sent."""
        task = self._find(req)
        if task is None:
            return 807, None
        created = _stamp(task.accepted_at)
        return 0, {
            "id": None, "userApiKey": mask_key(task.account), "taskId": task.task_id,
            "webhookUrl": task.webhook_url, "eventData": None, "callbackStatus": None,
            "callbackResponse": None, "retryCount": 0, "createTime": created, "updateTime": created,
        }  # fmt: skip

    # --- task helpers (called under the lock) ---------------------------------------------------

    def _find(self, req: _Req) -> _Task | None:
        """The caller's own, unexpired task; anything else is 807 to the caller."""
        task = self._tasks.get(req.task_id())
        if task is None or task.account != req.api_key:
            return None
        return None if task.status(req.now, self._knobs.job_expiry_s) == "EXPIRED" else task

    def _fate(self, values: list[str]) -> str:
        """Content markers win (`sim-reject` = audit failure, `sim-fail`), then `job_fail_rate`."""
        if any("sim-reject" in value for value in values):
            return "reject"
        if any("sim-fail" in value for value in values):
            return "fail"
        return "fail" if roll(self._rng, self._knobs.job_fail_rate) else "success"

    def _output_item(self, req: _Req, task: _Task, index: int) -> dict[str, object]:
        expires = int(req.now + self._knobs.result_url_ttl_s)
        path = f"/__sim/files/{task.task_id}/{index}.png"
        return {
            "fileUrl": signed_url(req.http.url, path, expires=expires, secret=self._secret),
            "fileType": "png",
            "taskCostTime": str(round(task.done_at - task.running_at)),
            "nodeId": "9",
            "thirdPartyConsumeMoney": None,
            "consumeMoney": None,
            "consumeCoins": "10",
        }

    # --- files ------------------------------------------------------------------------------------

    def file(self, request: httpx.Request, name: str) -> httpx.Response:
        """`{taskId}/{index}.png`; a signed URL must still be valid (a bare path is an admin peek)."""
        match = _FILE_NAME.fullmatch(name)
        task_id, index = (match.group(1), int(match.group(2))) if match else (None, 0)

        def find(_: float) -> Callable[[], bytes] | None:
            task = self._tasks.get(task_id or "")
            return None if task is None or index >= task.outputs else lambda: self._photo(task, index)

        return self._signed_file(request, task_id, find, secret=self._secret, content_type="image/png")

    def _photo(self, task: _Task, index: int) -> bytes:
        """Made on first download, then kept by what it depends on (`vendors.sim.media.CACHE`)."""
        url = next((value for value in task.values if value.startswith(("http://", "https://"))), "")
        prompt = " ".join(value for value in task.values if value != url)
        scene, category, scale = photos.scene_of(prompt), photos.category_of(prompt), self._knobs.media_scale
        key = ("runninghub", url, prompt, index % len(photos.POSES), scale)
        return CACHE.get(
            key,
            lambda: photos.pose_photo(
                self._garment(url), scene=scene, category=category, index=index, scale=scale, prompt=prompt
            ),
        )

    def _garment(self, url: str) -> Image.Image:
        """The garment at `url`, cut out; fetched once however many photos ask for it at once."""
        with self._garment_lock:
            known = self._garments.get(url)
            if known is None:
                image = open_image(self._fetch(url)) if url else None
                known = photos.cut_out(image if image is not None else garment_photo("dress", 512))
                if len(self._garments) >= 16:
                    self._garments.pop(next(iter(self._garments)))
                self._garments[url] = known
            return known


# --- wire helpers ---------------------------------------------------------------------------------


def _api_key(request: httpx.Request, body: Mapping[str, object]) -> str:
    """The key from the body (`apikey` only on accountStatus, as the vendor has it) or Bearer."""
    field = "apikey" if request.url.path == "/uc/openapi/accountStatus" else "apiKey"
    key = body.get(field)
    return key if isinstance(key, str) and key else bearer(request)


def _node_list(raw: object) -> list[tuple[str, str, str]] | None:
    """`nodeInfoList` as (nodeId, fieldName, fieldValue); None when its shape is wrong (301)."""
    if not isinstance(raw, list):
        return None
    nodes = []
    for item in raw:
        if not isinstance(item, dict) or not all(k in item for k in ("nodeId", "fieldName", "fieldValue")):
            return None
        nodes.append((str(item["nodeId"]), str(item["fieldName"]), str(item["fieldValue"])))
    return nodes


def _instance_type_ok(body: Mapping[str, object]) -> bool:
    return body.get("instanceType", "default") in ("default", "plus")


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _created(task: _Task, req: _Req) -> dict[str, object]:
    client_id = hashlib.md5(task.task_id.encode(), usedforsecurity=False).hexdigest()
    tips: dict[str, object] = {"result": True, "error": None, "outputs_to_execute": ["9"], "node_errors": {}}
    return {
        "netWssUrl": f"wss://{req.http.url.netloc.decode()}/ws/c_instance?clientId={client_id}",
        "taskId": task.task_id,
        "clientId": client_id,
        "taskStatus": task.status(req.now, math.inf),
        "promptTips": json.dumps(tips),
    }


def _failed_reason(fate: str) -> dict[str, object]:
    """The 805 `failedReason` record: audit-style for `reject`, a node exception otherwise."""
    kind, message = {
        "reject": ("audit.RHAuditException", "Porn"),
        "cancel": ("TaskCancelledException", "task cancelled by user"),
    }.get(fate, ("torch.OutOfMemoryError", "simulated failure: CUDA out of memory"))
    return {
        "node_id": "9", "node_name": "SaveImage", "exception_type": kind, "exception_message": message,
        "traceback": [f"Traceback (most recent call last):\n  {kind}: {message}\n"],
        "current_inputs": {}, "current_outputs": {},
    }  # fmt: skip


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
