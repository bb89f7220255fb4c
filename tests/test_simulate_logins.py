"""The simulator's credentials input: `powerflow devices enroll --json` lines, nothing else."""

from __future__ import annotations

import json

import pytest

from powerflow.simulate import DeviceLogin, login_url, read_logins, refuse_ingest_account


def line(code: str, password: str = "p" * 32) -> str:
    return json.dumps({"code": code, "username": f"device-{code}", "password": password})


def test_enroll_json_lines_are_logins() -> None:
    logins = read_logins([line("a"), "", line("b", "x/y@z")])
    assert [x.code for x in logins] == ["a", "b"]
    assert "x/y@z" not in repr(logins[1])  # a login never prints its password
    url = login_url("mqtts://ingest:secret@broker.example:8883", logins[1])
    assert url == "mqtts://device-b:x%2Fy%40z@broker.example:8883"


@pytest.mark.parametrize("bad", ["not json", '{"code": "a"}', "[1, 2]"])
def test_anything_else_is_refused_by_line_number_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="line 2") as caught:
        read_logins([line("a", "secret-password"), bad])
    assert "secret-password" not in str(caught.value)


def test_a_device_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        read_logins([line("a"), line("a")])


def test_logins_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import powerflow.simulate as simulate

    monkeypatch.setattr(simulate, "MAX_LOGINS", 2)
    with pytest.raises(ValueError, match="more than 2"):
        read_logins([line("a"), line("b"), line("c")])
    assert read_logins([line("a")]) == [DeviceLogin("a", "device-a", "p" * 32)]


@pytest.mark.parametrize(
    "url",
    ["mqtt://powerflow-ingest-0:pw@h:1883", "mqtt://t1234-powerflow-ingest-2:pw@h:1883"],
)
def test_the_simulator_never_logs_in_as_ingest(url: str) -> None:
    with pytest.raises(ValueError, match="take over ingest's session"):
        refuse_ingest_account(url)


def test_other_accounts_may_publish() -> None:
    refuse_ingest_account("mqtt://pf-test-fleet:pw@h:1883")
    refuse_ingest_account("mqtt://h:1883")
