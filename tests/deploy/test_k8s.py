"""deploy/k8s, the kustomize base: valid Kubernetes objects, in step with the Procfile, the queues and
the settings.

The base is rendered here without kubectl: its `resources` read as YAML, its generators made into
the ConfigMap and Secrets kustomize would make (without the name's hash suffix; references match by
name either way). A kustomization key the renderer does not know fails the test, so what is
validated is what `kubectl apply -k` would apply. Kubernetes objects are checked against the strict
schemas kubernetes-validate bundles (offline), KEDA's against tests/deploy/keda_schemas.py.
"""

from __future__ import annotations

import base64
import functools
import re
import shlex
import typing
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from genq import cli
from infra.settings import Secret, Settings
from tests.deploy.keda_schemas import SCHEMAS as KEDA_SCHEMAS
from workers import health
from workers.broker import NAMESPACE, QUEUES

ROOT = Path(__file__).parents[2]
BASE = ROOT / "deploy" / "k8s"
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())  # the oldest we support, the newest known
SUPPORTED = {"apiVersion", "kind", "resources", "configMapGenerator", "secretGenerator"}
URL_SECRETS = {"DATABASE_URL", "REDIS_URL"}  # str settings, but their URLs carry passwords
COMMAND_ENV = {"API_WORKERS"}  # read by the API's command line (the Procfile's), not a setting
# prometheus_client reads it too, and an empty value is not "unset" to it: set only where it is used
PER_DEPLOYMENT = {"PROMETHEUS_MULTIPROC_DIR"}
Obj = dict[str, Any]
QUANTITY = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")
INT_OR_PERCENT = re.compile(r"[0-9]+%?")
CHECKED = {"requests": QUANTITY, "limits": QUANTITY, "sizeLimit": QUANTITY}
CHECKED |= {"maxUnavailable": INT_OR_PERCENT, "minAvailable": INT_OR_PERCENT, "maxSurge": INT_OR_PERCENT}


def render(base: Path) -> list[Obj]:
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert set(kustomization) <= SUPPORTED, f"the test's renderer does not know {set(kustomization) - SUPPORTED}"
    objects = [o for name in kustomization["resources"] for o in yaml.safe_load_all((base / name).read_text()) if o]
    for generator in kustomization.get("configMapGenerator", []):
        name = generator["name"]
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": _generated(base, generator)}
        )
    for generator in kustomization.get("secretGenerator", []):
        data = {k: base64.b64encode(v.encode()).decode() for k, v in _generated(base, generator).items()}
        name = generator["name"]
        objects.append(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}
        )
    return objects


def _generated(base: Path, generator: Obj) -> dict[str, str]:
    assert set(generator) <= {"name", "envs", "literals", "options"}, generator
    pairs = [line for env in generator.get("envs", []) for line in _env_lines(base / env)]
    pairs += generator.get("literals", [])
    keys = [pair.split("=", 1)[0] for pair in pairs]
    assert len(keys) == len(set(keys)), f"{generator['name']}: a key twice"
    return dict(pair.split("=", 1) for pair in pairs)


def _env_lines(path: Path) -> Iterator[str]:
    """An env file as kustomize reads it: KEY=value lines; blank lines and # comments skipped."""
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", line), f"{path.name}: {line!r}"
            yield line


@functools.cache
def rendered() -> list[Obj]:
    return render(BASE)


def of_kind(kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in rendered() if o["kind"] == kind}


def data(name: str) -> dict[str, str]:
    found = of_kind("ConfigMap").get(name) or of_kind("Secret")[name]
    if found["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in found["data"].items()}
    return dict(found["data"])


def container(obj: Obj) -> Obj:
    (only,) = obj["spec"]["template"]["spec"]["containers"]
    return dict(only)


def runs(c: Obj) -> str:
    """The command line a container runs, as the Procfile writes it (`sh -c "exec ..."` unwrapped)."""
    argv = [*c.get("command", []), *c.get("args", [])]
    if argv[:2] == ["sh", "-c"] and argv[2].startswith("exec "):
        return str(argv[2].removeprefix("exec "))
    return shlex.join(argv)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    pairs = [line.split(":", 1) for line in lines if line.strip()]
    return {name.strip(): command.strip() for name, command in pairs}


def settings_in_env_example() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {m.group(1) for line in lines if (m := re.match(r"([A-Z][A-Z0-9_]*)=", line))}


def secret_settings() -> set[str]:
    hints = typing.get_type_hints(Settings)
    return {f.name.upper() for f in fields(Settings) if hints[f.name] is Secret}


def test_every_object_validates_against_its_schema() -> None:
    errors = []

    for obj, version in [(o, v) for o in rendered() for v in K8S_VERSIONS]:
        where = f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version})"
        try:
            if obj["apiVersion"].startswith("keda.sh/"):
                jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])
            else:
                kubernetes_validate.validate(obj, version, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{where}: {'.'.join(map(str, getattr(exc, 'path', [])))}: {getattr(exc, 'message', exc)}")

    assert {o["kind"] for o in rendered()} >= {"Deployment", "Service", "Job", "PodDisruptionBudget", "ScaledObject"}
    assert errors == []


def test_every_procfile_line_has_a_deployment_running_that_command_with_probes() -> None:
    deployments = of_kind("Deployment")

    commands = {
        name: runs(container(deployments[f"genq-{name}"])) for name in procfile() if f"genq-{name}" in deployments
    }

    assert commands == procfile()
    assert set(deployments) == {f"genq-{name}" for name in procfile()}
    for d in deployments.values():
        assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(container(d)), d["metadata"]["name"]


def test_the_api_probes_healthz_and_readyz_on_its_port() -> None:
    api, config = container(of_kind("Deployment")["genq-api"]), data("genq-config")

    (port,) = api["ports"]

    assert (port["containerPort"], config["API_PORT"], config["API_HOST"]) == (8000, "8000", "0.0.0.0")
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert api["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert of_kind("Service")["genq-api"]["spec"]["ports"][0]["targetPort"] == port["name"]


@pytest.mark.parametrize("queue", QUEUES)
def test_a_worker_pools_probes_read_the_heartbeat_its_worker_writes(queue: str, tmp_path: Path) -> None:
    """The probes name the queues the command serves: the heartbeat file is named after them."""
    pool = container(of_kind("Deployment")[f"genq-{queue}"])
    served = shlex.split(runs(pool))[2:]
    health.Heartbeat(health.beat_path(tmp_path, served), alive=lambda: True, checks={}).check()

    probes = {kind: pool[kind]["exec"]["command"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}

    assert probes["livenessProbe"] == probes["startupProbe"] == ["python", "-m", "workers.health", *served]
    assert probes["readinessProbe"] == ["python", "-m", "workers.health", *served, "--ready"]
    assert all(health.main(argv[3:], env={"VAR_DIR": str(tmp_path)}) == 0 for argv in probes.values())


@pytest.mark.parametrize("queue", QUEUES)
def test_a_worker_pool_exposes_worker_metrics_port_and_is_annotated_for_scraping(queue: str) -> None:
    """Each pod's worker serves /metrics on WORKER_METRICS_PORT: the port the pod names and scrapes."""
    pool = of_kind("Deployment")[f"genq-{queue}"]
    port = int(data("genq-config")["WORKER_METRICS_PORT"])

    (named,) = [p for p in container(pool).get("ports", []) if p.get("name") == "metrics"]
    annotations = pool["spec"]["template"]["metadata"].get("annotations", {})

    assert port > 0 and named["containerPort"] == port
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def test_every_pod_can_write_var_dir_and_tmp() -> None:
    """The root filesystem is read-only: the heartbeat file and temporary files need a volume."""
    var_dir = data("genq-config")["VAR_DIR"]

    for d in [*of_kind("Deployment").values(), *of_kind("Job").values()]:
        c = container(d)
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in mounts and (d["kind"] == "Job" or var_dir in mounts), d["metadata"]["name"]
        overrides = {e["name"]: e["value"] for e in c.get("env", [])}
        assert all(overrides[name] in mounts for name in PER_DEPLOYMENT & set(overrides)), d["metadata"]["name"]


def test_each_scaled_object_targets_a_pool_deployment_and_the_redis_list_of_its_queue() -> None:
    deployments, auths = of_kind("Deployment"), of_kind("TriggerAuthentication")
    scaled: dict[str, str] = {}

    for so in of_kind("ScaledObject").values():
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        argv = shlex.split(runs(container(target)))
        (trigger,) = so["spec"]["triggers"]
        auth = auths[trigger["authenticationRef"]["name"]]
        keys = {(ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
        assert argv[:2] == ["genq", "worker"] and len(argv) == 3, argv
        assert "replicas" not in target["spec"], "KEDA owns a scaled pool's count"
        assert all(key in data(name) for name, key in keys)
        scaled[argv[2]] = trigger["metadata"]["listName"]

    assert scaled == {q: f"{NAMESPACE}:{q}" for q in QUEUES if q != "maintenance"}
    assert deployments["genq-maintenance"]["spec"]["replicas"] == 1


def test_the_configmap_and_the_secret_hold_every_setting_once() -> None:
    config, secret = set(data("genq-config")), set(data("genq-secrets"))

    assert config | secret | PER_DEPLOYMENT == settings_in_env_example() == {f.name.upper() for f in fields(Settings)}
    assert config & secret == config & PER_DEPLOYMENT == secret & PER_DEPLOYMENT == set()
    assert secret == secret_settings() | URL_SECRETS


def test_the_secrets_in_git_are_placeholders() -> None:
    placeholder = re.compile(r"^$|REPLACE-ME|replace-me\.invalid")

    values = {f"{name}.{k}": v for name in of_kind("Secret") for k, v in data(name).items()}

    assert {k: v for k, v in values.items() if not placeholder.search(v)} == {}


def test_every_container_takes_the_settings_and_nothing_else() -> None:
    for workload in [*of_kind("Deployment").values(), *of_kind("Job").values()]:
        c = container(workload)

        sources = [next(iter(ref.values()))["name"] for ref in c["envFrom"]]

        assert sources == ["genq-config", "genq-secrets"], workload["metadata"]["name"]
        assert {e["name"] for e in c.get("env", [])} <= settings_in_env_example() | COMMAND_ENV


def test_the_migration_job_runs_genq_migrate(capsys: pytest.CaptureFixture[str]) -> None:
    (job,) = of_kind("Job").values()

    with pytest.raises(SystemExit) as help_shown:
        cli.main(["migrate", "--help"])

    assert container(job)["command"] == ["genq", "migrate"]
    assert help_shown.value.code == 0 and "usage: genq migrate" in capsys.readouterr().out
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_every_deployment_has_a_disruption_budget_resources_and_matching_labels() -> None:
    budgets = [b["spec"]["selector"]["matchLabels"] for b in of_kind("PodDisruptionBudget").values()]

    for d in of_kind("Deployment").values():
        labels, c = d["spec"]["template"]["metadata"]["labels"], container(d)
        covering = [s for s in budgets if s.items() <= labels.items()]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert len(covering) == 1, d["metadata"]["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]


def test_quantities_and_int_or_percent_fields_are_well_formed() -> None:
    """What the JSON schemas leave to the API server: `512Mo` or `maxUnavailable: one` pass them."""
    bad = [
        (key, value) for key, value in _leaves(rendered()) if key in CHECKED and not CHECKED[key].fullmatch(str(value))
    ]

    assert bad == []


def _leaves(node: object, key: str = "") -> Iterator[tuple[str, object]]:
    """(key, value) for every scalar; a scalar in a mapping under `requests`/`limits` takes that key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, key if key in ("requests", "limits") else k)
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item, key)
    else:
        yield key, node


def test_the_kustomization_renders_every_resource_file_in_the_base() -> None:
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])

    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
