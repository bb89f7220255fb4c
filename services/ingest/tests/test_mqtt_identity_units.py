"""ingest's MQTT identity: its broker account is its client id, or it does not start."""

from __future__ import annotations

import pytest

from powerflow_common.errors import ConfigurationError
from powerflow_common.settings import load_settings
from powerflow_ingest.mqtt import BrokerAddress, checked_client_id


def test_the_account_named_after_the_client_id_is_accepted() -> None:
    address = BrokerAddress.parse("mqtt://ns-powerflow-ingest-2:pw@broker:1883")
    assert checked_client_id(address, "ns-powerflow-ingest-2") == "ns-powerflow-ingest-2"


def test_an_anonymous_login_keeps_the_client_id() -> None:
    # A broker without accounts (not powerflow's): nothing to compare.
    address = BrokerAddress.parse("mqtt://broker:1883")
    assert checked_client_id(address, "powerflow-ingest-0") == "powerflow-ingest-0"


def test_another_account_is_refused_with_what_to_set() -> None:
    address = BrokerAddress.parse("mqtt://powerflow-ingest-0:pw@broker:1883")
    with pytest.raises(ConfigurationError, match="ns-powerflow-ingest-0") as caught:
        checked_client_id(address, "ns-powerflow-ingest-0")
    assert "pw" not in str(caught.value).replace("powerflow", "")  # no password in the message


def test_mqtt_password_replaces_the_urls_password() -> None:
    settings = load_settings(
        mqtt_url="mqtts://powerflow-ingest-0:old@broker.example:8883",
        mqtt_password="n3w/p@ss",
        mqtt_ca_file="/etc/powerflow/ca.crt",
    )
    address = BrokerAddress.parse(settings.mqtt_login_url, settings.mqtt_ca_file)
    assert (address.username, address.password) == ("powerflow-ingest-0", "n3w/p@ss")
    assert (address.host, address.port, address.tls) == ("broker.example", 8883, True)
    assert address.ca_file == "/etc/powerflow/ca.crt"
    assert "n3w" not in repr(settings)
