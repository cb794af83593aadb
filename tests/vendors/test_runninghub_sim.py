"""RunningHubSim over raw HTTP: the vendor surface the client does not use, and `/__sim/` admin."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from vendors.sim.runninghub import RunningHubSim

WEBAPP = 1947599512657453057
NODES = [{"nodeId": "6", "fieldName": "text", "fieldValue": "a red fox"}]


def call(http: httpx.Client, path: str, **body: Any) -> dict[str, Any]:
    answer = http.post(path, json=body)
    assert answer.status_code == 200
    envelope: dict[str, Any] = answer.json()
    assert set(envelope) == {"code", "msg", "data"}
    return envelope


def run(http: httpx.Client, key: str, **extra: Any) -> str:
    envelope = call(http, "/task/openapi/ai-app/run", apiKey=key, webappId=WEBAPP, nodeInfoList=NODES, **extra)
    assert envelope["code"] == 0
    return str(envelope["data"]["taskId"])


def first_file_url(http: httpx.Client, key: str, task_id: str) -> str:
    http.post(f"/__sim/jobs/{task_id}/complete")
    return str(call(http, "/task/openapi/outputs", apiKey=key, taskId=task_id)["data"][0]["fileUrl"])


def test_run_answers_the_documented_create_shape(http, api_key) -> None:
    envelope = call(http, "/task/openapi/ai-app/run", apiKey=api_key, webappId=WEBAPP, nodeInfoList=NODES)

    data = envelope["data"]
    assert (envelope["code"], envelope["msg"]) == (0, "success")
    assert set(data) == {"netWssUrl", "taskId", "clientId", "taskStatus", "promptTips"}
    assert data["taskStatus"] == "QUEUED"
    assert isinstance(data["promptTips"], str) and '"node_errors": {}' in data["promptTips"]


def test_status_is_a_bare_string_through_the_lifecycle(sim, clock, http, api_key) -> None:
    task_id = run(http, api_key)
    seen = []
    for step in (0, sim.knobs.queued_s, sim.knobs.running_s):
        clock.advance(step)
        seen.append(call(http, "/task/openapi/status", apiKey=api_key, taskId=task_id)["data"])

    assert seen == ["QUEUED", "RUNNING", "SUCCESS"]


def test_failed_outputs_carry_the_failed_reason_record(sim, clock, http, api_key) -> None:
    nodes = [{"nodeId": "6", "fieldName": "text", "fieldValue": "sim-fail"}]
    task_id = str(call(http, "/task/openapi/ai-app/run", apiKey=api_key, webappId=WEBAPP, nodeInfoList=nodes)
                  ["data"]["taskId"])  # fmt: skip
    clock.advance(sim.knobs.queued_s + sim.knobs.running_s)

    envelope = call(http, "/task/openapi/outputs", apiKey=api_key, taskId=task_id)

    assert envelope["code"] == 805
    assert set(envelope["data"]["failedReason"]) == {
        "node_id", "node_name", "exception_type", "exception_message", "traceback", "current_inputs",
        "current_outputs",
    }  # fmt: skip


def test_key_is_read_from_bearer_when_not_in_body(http, api_key) -> None:
    body = {"webappId": WEBAPP, "nodeInfoList": NODES}

    with_bearer = http.post("/task/openapi/ai-app/run", json=body, headers={"Authorization": f"Bearer {api_key}"})
    without = http.post("/task/openapi/ai-app/run", json=body)

    assert (with_bearer.json()["code"], without.json()["code"]) == (0, 802)


def test_account_status_takes_the_lower_case_apikey(http, api_key) -> None:
    assert call(http, "/uc/openapi/accountStatus", apikey=api_key)["code"] == 0
    assert call(http, "/uc/openapi/accountStatus", apiKey=api_key)["code"] == 802


def test_create_runs_a_workflow(http, api_key) -> None:
    envelope = call(http, "/task/openapi/create", apiKey=api_key, workflowId="1904136902449209346")

    assert envelope["code"] == 0
    assert len(envelope["data"]["taskId"]) == 19


def test_create_without_a_workflow_is_params_invalid(http, api_key) -> None:
    assert call(http, "/task/openapi/create", apiKey=api_key)["code"] == 301


def test_upload_returns_a_file_name(http, api_key) -> None:
    answer = http.post(
        "/task/openapi/upload",
        data={"apiKey": api_key, "fileType": "image"},
        files={"file": ("pose.png", b"\x89PNG fake", "image/png")},
    )

    data = answer.json()["data"]
    assert data["fileName"].startswith("api/") and data["fileType"] == "image"


def test_upload_over_30_mb_is_809(http, api_key) -> None:
    big = b"\0" * (30 * 1024 * 1024 + 1)

    answer = http.post("/task/openapi/upload", data={"apiKey": api_key}, files={"file": ("big.png", big)})

    assert answer.json()["code"] == 809


def test_webhook_detail_may_be_an_empty_record(http, api_key) -> None:
    task_id = run(http, api_key, webhookUrl="https://genq.example/hooks/rh?token=t")

    data = call(http, "/task/openapi/getWebhookDetail", apiKey=api_key, taskId=task_id)["data"]

    assert data["taskId"] == task_id and data["callbackStatus"] is None
    assert data["webhookUrl"] == "https://genq.example/hooks/rh?token=t"


def test_another_keys_task_is_unknown_and_an_unknown_key_is_802(api_key) -> None:
    other = "rhk-someone-else-0000000000000000"
    sim = RunningHubSim(api_keys=[api_key, other])
    http = httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://rh.sim")
    task_id = run(http, api_key)

    assert call(http, "/task/openapi/outputs", apiKey=other, taskId=task_id)["code"] == 807
    assert call(http, "/task/openapi/outputs", apiKey="rhk-nobody", taskId=task_id)["code"] == 802


def test_failure_rate_can_target_one_endpoint(sim, http, api_key) -> None:
    sim.configure(failure_rate={"/task/openapi/outputs": 1.0}, failure_kind="rate")
    task_id = run(http, api_key)

    assert call(http, "/task/openapi/outputs", apiKey=api_key, taskId=task_id)["code"] == 1003


# --- admin ------------------------------------------------------------------------------------------


def test_config_is_readable_and_settable_over_http(http) -> None:
    answer = http.post("/__sim/config", json={"queued_s": 0, "latency_ms": [0, 1]})

    assert answer.status_code == 200
    assert http.get("/__sim/config").json()["queued_s"] == 0
    assert http.get("/__sim/config").json()["latency_ms"] == [0, 1]


@pytest.mark.parametrize(
    "body", [{"no_such_knob": 1}, {"failure_rate": 2}, {"lost_answer_rate": {"*": -1}}, {"failure_kind": "meteor"}, [1]]
)
def test_bad_config_is_400_and_changes_nothing(http, body) -> None:
    before = http.get("/__sim/config").json()

    answer = http.post("/__sim/config", json=body)

    assert answer.status_code == 400
    assert http.get("/__sim/config").json() == before


def test_reset_forgets_tasks_and_calls_but_keeps_keys(http, api_key) -> None:
    task_id = run(http, api_key)

    http.post("/__sim/reset")

    assert http.get("/__sim/calls").json() == []
    assert http.get("/__sim/stats").json()["tasks"] == 0
    assert call(http, "/task/openapi/outputs", apiKey=api_key, taskId=task_id)["code"] == 807
    assert call(http, "/uc/openapi/accountStatus", apikey=api_key)["code"] == 0


def test_calls_record_path_task_and_masked_key(http, api_key) -> None:
    task_id = run(http, api_key)

    calls = http.get("/__sim/calls").json()

    assert [(c["method"], c["path"], c["task_id"], c["api_key"]) for c in calls] == [
        ("POST", "/task/openapi/ai-app/run", task_id, "****3c2d")
    ]
    assert "apiKey" not in calls[0]["body"]


def test_vendor_paths_never_serve_admin_and_admin_404s_unknown(http) -> None:
    assert http.get("/__sim/nothing").status_code == 404
    assert http.post("/task/openapi/unknown", json={}).status_code == 404


# --- files ------------------------------------------------------------------------------------------


def test_range_request_is_206_with_the_right_bytes(http, api_key) -> None:
    url = first_file_url(http, api_key, run(http, api_key))
    whole = http.get(url).content

    part = http.get(url, headers={"Range": "bytes=0-7"})
    tail = http.get(url, headers={"Range": "bytes=-4"})

    assert part.status_code == 206
    assert part.content == whole[:8] == b"\x89PNG\r\n\x1a\n"
    assert part.headers["Content-Range"] == f"bytes 0-7/{len(whole)}"
    assert (tail.status_code, tail.content) == (206, whole[-4:])


def test_range_past_the_end_is_416(http, api_key) -> None:
    url = first_file_url(http, api_key, run(http, api_key))

    answer = http.get(url, headers={"Range": "bytes=999999-"})

    assert answer.status_code == 416


def test_file_urls_are_signed_and_short_lived(sim, clock, http, api_key) -> None:
    url = httpx.URL(first_file_url(http, api_key, run(http, api_key)))
    tampered = url.copy_set_param("Signature", "0" * 64)

    fresh = http.get(url)
    forged = http.get(tampered)
    clock.advance(sim.knobs.result_url_ttl_s + 1)
    stale = http.get(url)

    assert url.host == "rh.sim" and url.params["Expires"].isdigit()
    assert (fresh.status_code, forged.status_code, stale.status_code) == (200, 403, 403)
    Image.open(io.BytesIO(fresh.content)).verify()
