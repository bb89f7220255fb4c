"""The shipped deployment files: they parse, and every role they run is a real command."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import typer
import yaml

from pf_testing import nats_server_binary
from powerflow.broker import BROKER_CONFIG, render_config
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


def test_the_deployment_files_use_the_packaged_broker_configuration() -> None:
    # `powerflow` reads the package's copy; the container and kustomize read deploy/'s (kustomize
    # loads no file outside its folder), so the two are one text.
    assert (DEPLOY / "mosquitto" / "mosquitto.conf").read_bytes() == BROKER_CONFIG.read_bytes()


def test_the_broker_configuration_holds_what_the_guarantee_promises() -> None:
    text = BROKER_CONFIG.read_text()
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


# --- internal services' credentials --------------------------------------------------------

NATS_CONF = DEPLOY / "nats" / "nats.conf"
POWERFLOW_ROLES_ON_NATS = {"ingest", "writer", "aggregator", "alerts", "api"}


def nats_users() -> dict[str, str]:
    """User name -> the environment variable holding its password, from nats.conf."""
    text = NATS_CONF.read_text()
    return dict(re.findall(r"user: (\w+)\s+password: \$(\w+)", text))


def compose() -> Any:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def unescape(command: str) -> str:
    """A compose command as the container's shell sees it ($$ is compose's literal $)."""
    return command.replace("$$", "$")


def test_nats_has_one_user_per_service_and_no_password_in_the_file() -> None:
    users = nats_users()
    assert set(users) == POWERFLOW_ROLES_ON_NATS | {"admin"}
    assert not re.search(r"password: [^$\s]", NATS_CONF.read_text())
    assert "no_auth_user" not in NATS_CONF.read_text()


def test_compose_gives_each_service_its_own_nats_user_and_only_its_secrets() -> None:
    doc = compose()
    declared = set(doc["secrets"])
    script = (DEPLOY / "make-secrets.sh").read_text()
    for name, spec in doc["secrets"].items():
        assert spec["file"] == f"./secrets/{name}"
        made = name in script or name.removeprefix("nats_").removesuffix("_password") in script
        assert made, f"make-secrets.sh does not make {name}"
    for name, service in doc["services"].items():
        # A secret is its name, or {source, target} when mounted elsewhere (the broker's).
        secrets = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert secrets <= declared, name
        env = service.get("environment", {})
        for key, value in env.items():
            inline = "PASSWORD" in key and not key.endswith("_FILE") and value != "yes"
            assert not inline, f"{name}: {key} is set inline"
            if key.endswith("_FILE") and not value.startswith("/run/broker/"):
                # (a broker account's password is read from the broker's own volume)
                assert value.removeprefix("/run/secrets/") in secrets, f"{name}: {key}"
            assert not re.search(r"://[^/@\s]*:[^@\s]+@", str(value)), f"{name}: {key}"
        if service.get("image") == "powerflow:latest":
            role = service["command"][0]
            if role in POWERFLOW_ROLES_ON_NATS:
                assert env["POWERFLOW_NATS_USER"] == role
                assert env["POWERFLOW_NATS_PASSWORD_FILE"] == f"/run/secrets/nats_{role}_password"
                assert secrets & {f"nats_{u}_password" for u in nats_users()} == {
                    f"nats_{role}_password"
                }
            else:
                assert not any(s.startswith("nats_") for s in secrets), name
            redis_needed = role in ("api", "reporter")
            assert ("redis_password" in secrets) == redis_needed, name


def test_the_compose_nats_entrypoint_feeds_every_password_to_a_valid_config(
    tmp_path: Path,
) -> None:
    server = nats_server_binary()
    [command] = compose()["services"]["nats"]["command"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for user in nats_users():
        (secrets / f"nats_{user}_password").write_text(f"pw-{user}\n")
    script = (
        unescape(command)
        .replace("/run/secrets", str(secrets))
        .replace("exec nats-server -c /etc/nats/nats.conf", f"exec {server} -t -c {NATS_CONF}")
    )
    checked = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={})
    assert checked.returncode == 0, checked.stderr


def test_the_compose_redis_entrypoint_requires_the_secret_password(tmp_path: Path) -> None:
    [command] = compose()["services"]["redis"]["command"]
    (tmp_path / "redis_password").write_text("s3cret-pw\n")
    script = (
        unescape(command)
        .replace("/run/secrets", str(tmp_path))
        .replace("/tmp/redis.conf", str(tmp_path / "redis.conf"))
        .replace("exec redis-server", "exec cat")
    )
    shown = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "requirepass s3cret-pw\n"
    assert "s3cret-pw" not in command


def test_kubernetes_pods_mount_only_their_own_passwords() -> None:
    documents = [
        d
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
    ]
    users = nats_users()
    for doc in documents:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        [container] = pod["containers"]
        env = {e["name"]: e for e in container.get("env", [])}
        if container.get("image") == "powerflow":
            role = container["args"][0]
            keys = {
                item["key"]
                for volume in pod.get("volumes", [])
                for item in volume.get("secret", {}).get("items", [])
            }
            if role in POWERFLOW_ROLES_ON_NATS:
                assert env["POWERFLOW_NATS_USER"]["value"] == role
                assert {k for k in keys if k.startswith("nats-")} == {f"nats-{role}-password"}
            else:
                assert "POWERFLOW_NATS_USER" not in env
                assert not any(k.startswith("nats-") for k in keys)
            assert ("redis-password" in keys) == (role in ("api", "reporter")), role
            if keys:
                assert pod["securityContext"]["fsGroup"] == 10001  # the image's user
        elif container["name"] == "nats":
            # (POD_NAME: the server's name in the cluster, from the downward API)
            assert set(env) - {"POD_NAME"} == set(users.values())
            env.pop("POD_NAME", None)
            for value in env.values():
                assert value["valueFrom"]["secretKeyRef"]["name"] == "powerflow-internal"
        elif container["name"] == "redis":
            assert "requirepass" in " ".join(container["args"])
            assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"


def test_make_secrets_makes_every_compose_secret_once(tmp_path: Path) -> None:
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DEPLOY / "make-secrets.sh", script)
    first = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    made = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    assert set(made) == set(compose()["secrets"])
    assert all(len(v.strip()) >= 16 for v in made.values())
    password = made["mariadb_password"].strip()
    assert made["database_url"].strip().endswith(f":{password}@mariadb:3306/powerflow")
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == ""  # kept, never replaced
    assert {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()} == made


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
    ingest = next(
        d
        for d in documents
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "powerflow-ingest"
    )
    env = {
        e["name"]: e.get("value")
        for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert urlsplit(env["POWERFLOW_MQTT_URL"]).username == Names().mqtt_client_id("0")
