"""The shipped deployment files: they parse, and every role they run is a real command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from powerflow.broker import render_config
from powerflow.cli import app

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def commands() -> set[str]:
    group: Any = typer.main.get_command(app)
    return set(group.commands)


def roles_in(document: Any) -> list[str]:
    """Every powerflow role a compose service or Kubernetes container runs."""
    found: list[str] = []
    if isinstance(document, dict):
        if document.get("image") == "powerflow" and document.get("args"):
            found.append(document["args"][0])
        for value in document.values():
            found += roles_in(value)
    elif isinstance(document, list):
        for item in document:
            found += roles_in(item)
    return found


def test_every_kubernetes_role_is_a_powerflow_command() -> None:
    roles = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            roles += roles_in(document)
    assert {"ingest", "writer", "aggregator", "reporter", "api", "migrate"} <= set(roles)
    assert set(roles) <= commands()


def test_every_compose_service_runs_a_powerflow_command() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    ours = [
        service["command"][0]
        for service in compose["services"].values()
        if service.get("image") == "powerflow:latest"
    ]
    assert {"ingest", "writer", "aggregator", "reporter", "api", "migrate"} <= set(ours)
    assert set(ours) <= commands()


def test_the_broker_configuration_holds_what_the_guarantee_promises() -> None:
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    setting = dict(
        line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert setting["persistence"] == "true"
    assert int(setting["autosave_interval"]) <= 5
    assert int(setting["max_queued_messages"]) >= 100_000
    assert setting["max_inflight_messages"] == "0"
    assert setting["queue_qos0_messages"] == "false"
    rendered = render_config(18830, Path("/tmp/x"))
    assert re.search(r"(?m)^listener 18830 127\.0\.0\.1$", rendered)
    assert re.search(r"(?m)^persistence_location /tmp/x/$", rendered)


def test_the_deployments_run_the_projects_broker_and_ingest_logs_in_as_its_client_id() -> None:
    from urllib.parse import urlsplit

    from powerflow_common.names import Names

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert compose["mosquitto"]["command"][0] == "broker"
    ingest_url = compose["ingest"]["environment"]["POWERFLOW_MQTT_URL"]
    assert urlsplit(ingest_url).username == Names().mqtt_client_id("0")
    assert "POWERFLOW_MQTT_PASSWORD_FILE" in compose["ingest"]["environment"]
    documents = [
        d
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
    ]
    broker_sets = [d for d in documents if d["metadata"]["name"] == "mosquitto"]
    containers = broker_sets[0]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "powerflow" and containers[0]["args"][0] == "broker"
    ingest = next(d for d in documents if d["metadata"]["name"] == "powerflow-ingest")
    env = {
        e["name"]: e.get("value")
        for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert urlsplit(env["POWERFLOW_MQTT_URL"]).username == Names().mqtt_client_id("0")
