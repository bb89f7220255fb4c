"""The embedded broker's accounts: topic-to-subject mapping and the rendered configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerflow_common.embedded_broker import (
    DEVICES_ACCOUNT,
    OPEN_LAB_USERNAME,
    EmbeddedBrokerAdmin,
    EmbeddedBrokerError,
    empty_state,
    put_ingest,
    read_state,
    render_accounts,
    set_open_lab,
    topic_subjects,
    write_state,
)


@pytest.mark.parametrize(
    ("topic", "subjects"),
    [
        ("power/dev1/measurement", ("power.dev1.measurement",)),
        ("power/+/measurement", ("power.*.measurement",)),
        ("tele/dev1/+", ("tele.dev1.*",)),
        ("shelly1/status/switch:0", ("shelly1.status.switch:0",)),
        ("emon/#", ("emon", "emon.>")),
        ("#", (">",)),
        ("a.b/c", ("a//b.c",)),  # nats-server 2.10+: '.' in a level is '//'
    ],
)
def test_topics_map_to_the_subjects_nats_server_uses(topic: str, subjects: tuple[str, ...]) -> None:
    assert topic_subjects(topic) == subjects


@pytest.mark.parametrize("topic", ["", "a//b", "/a", "a/", "a b"])
def test_topics_nats_server_would_escape_or_refuse_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="empty level or a space"):
        topic_subjects(topic)


def test_the_rendered_accounts_hold_hashes_and_rights_never_a_password() -> None:
    state = empty_state()
    put_ingest(state, "powerflow-ingest-0", "ingest-secret")
    state["devices"]["device-a"] = {
        "password": "$2b$04$hash",
        "publish": ["power/a/measurement"],
        "subscribe": [],
        "textname": "a",
    }
    text = render_accounts(state)
    assert "ingest-secret" not in text
    assert '"power.a.measurement"' in text and '"$MQTT.msgs.power.*.measurement"' in text
    assert OPEN_LAB_USERNAME not in text
    set_open_lab(state, True)
    opened = render_accounts(state)
    open_line = next(line for line in opened.splitlines() if OPEN_LAB_USERNAME in line)
    assert "password" not in open_line  # nats-server's no_auth_user may have none
    assert opened.index(OPEN_LAB_USERNAME) > opened.index(DEVICES_ACCOUNT)


def test_the_admin_refuses_powerflows_own_accounts_and_files_are_private(tmp_path: Path) -> None:
    state = empty_state()
    put_ingest(state, "powerflow-ingest-0", "secret")
    write_state(tmp_path, state)
    for name in ("accounts.json", "accounts.conf"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    with EmbeddedBrokerAdmin(tmp_path) as admin:
        with pytest.raises(EmbeddedBrokerError, match="powerflow owns"):
            admin.set_client("powerflow-ingest-0", "x", publish=["#"])
        with pytest.raises(EmbeddedBrokerError, match="powerflow owns"):
            admin.remove_client(OPEN_LAB_USERNAME)
        admin.set_client("device-a", "pw", publish=["power/a/measurement"])  # not running
        assert admin.list_clients() == ["device-a"]
        assert admin.remove_client("device-a") and not admin.remove_client("device-a")
    assert read_state(tmp_path)["devices"] == {}


def test_an_admin_without_a_broker_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedBrokerError, match="no embedded broker"):
        EmbeddedBrokerAdmin(tmp_path).__enter__()
