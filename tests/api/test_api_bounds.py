"""Every integer, length and time the API takes has a bound, and crossing it is a 4xx naming it.

One test per class of bound: integers in the query, integers in the path, lengths of strings,
times (including those whose UTC conversion overflows), cursors, request bodies, live filters.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from pf_api_data import add_device, add_site, bearer
from sqlalchemy import Engine

from powerflow_api.controllers.live import MAX_LIVE_DEVICES
from powerflow_common.bounds import MAX_OFFSET, MAX_ROW_ID

Client = TestClient[Any]
BEYOND_BIGINT = 2233205945456851156992  # the offset the schema fuzz test found (a 500 then)


def _problem(response: Any, status: int, key: str) -> dict[str, Any]:
    """The problem body, after checking its status and that it names ``key``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert key in body["detail"], body
    return body


def _cursor(**fields: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(fields)).decode().rstrip("=")


def test_integers_in_the_query_beyond_their_bound_are_400_naming_parameter_and_bound(
    client: Client, keys: dict[str, str]
) -> None:
    headers = bearer(keys["viewer"])
    for url, key, bound in (
        (f"/api/v1/reports?offset={BEYOND_BIGINT}", "offset", str(MAX_OFFSET)),
        (f"/api/v1/reports?offset={MAX_OFFSET + 1}", "offset", str(MAX_OFFSET)),
        ("/api/v1/reports?offset=-1", "offset", "0"),
        ("/api/v1/reports?limit=501", "limit", "500"),
        (f"/api/v1/devices?site_id={BEYOND_BIGINT}", "site_id", str(MAX_ROW_ID)),
        ("/api/v1/devices?site_id=0", "site_id", "1"),
        ("/api/v1/devices/1001/readings?limit=5001", "limit", "5000"),
    ):
        body = _problem(client.get(url, headers=headers), 400, key)
        assert bound in body["detail"], (url, body)
    # At the bound itself: answered, empty.
    response = client.get(f"/api/v1/reports?offset={MAX_OFFSET}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == []


def test_ids_in_the_path_beyond_the_id_column_are_400_and_within_it_404(
    client: Client, keys: dict[str, str]
) -> None:
    headers = bearer(keys["admin"])
    for site_id in (MAX_ROW_ID + 1, 2**63, BEYOND_BIGINT, 0):
        _problem(client.get(f"/api/v1/sites/{site_id}", headers=headers), 400, "site_id")
        response = client.patch(f"/api/v1/sites/{site_id}", json={"name": "x"}, headers=headers)
        _problem(response, 400, "site_id")
    _problem(client.get(f"/api/v1/sites/{MAX_ROW_ID}", headers=headers), 404, str(MAX_ROW_ID))


def test_strings_longer_than_their_column_are_400(client: Client, keys: dict[str, str]) -> None:
    headers = bearer(keys["admin"])
    code = "x" * 65
    for url in (
        f"/api/v1/devices/{code}",
        f"/api/v1/devices/{code}/readings",
        f"/api/v1/devices/{code}/readings/latest",
        f"/api/v1/devices/{code}/readings/export",
    ):
        _problem(client.get(url, headers=headers), 400, "code")
    _problem(client.patch(f"/api/v1/devices/{code}", json={}, headers=headers), 400, "code")
    _problem(client.get(f"/api/v1/reports/{'r' * 37}", headers=headers), 400, "report_id")
    _problem(client.get(f"/api/v1/reports/{'r' * 37}/html", headers=headers), 400, "report_id")
    response = client.get(f"/api/v1/devices/1001/readings?cursor={'c' * 513}", headers=headers)
    _problem(response, 400, "cursor")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("start", "0001-01-01T00:00:00+05:00"),  # overflowed converting to UTC
        ("end", "0001-01-01T00:00:00Z"),  # overflowed subtracting the default 24 h
        ("end", "9999-12-31T23:00:00-05:00"),  # overflowed converting to UTC
        ("start", "1969-12-31T23:59:59Z"),
        ("end", "2200-01-01T00:00:00Z"),
    ],
)
def test_times_out_of_range_are_400_naming_the_parameter_and_the_range(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime, param: str, value: str
) -> None:
    add_device(engine, "1001", last_seen=now)
    headers = bearer(keys["viewer"])
    for path in ("/api/v1/devices/1001/readings", "/api/v1/devices/1001/readings/export"):
        body = _problem(client.get(path, params={param: value}, headers=headers), 400, param)
        assert "1970-01-01T00:00:00Z" in body["detail"]
        assert "2200-01-01T00:00:00Z" in body["detail"]
        assert body["errors"] == [{"key": param, "message": body["detail"].split(": ", 2)[2]}]
    # Every endpoint that reads times shares the check (statistics too: never a 500).
    response = client.get("/api/v1/stats/organisation", params={param: value}, headers=headers)
    assert response.status_code == 400, response.text


def test_cursors_that_the_api_did_not_make_are_400_and_its_own_still_page(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    device_id = add_device(engine, "1001", last_seen=now)
    headers = bearer(keys["viewer"])
    url = "/api/v1/devices/1001/readings"
    good = {"as_of": "2026-01-01T00:00:00Z", "resolution": "1m", "device_id": device_id}
    for resolution, cursor in (
        ("raw", "garbage!"),
        ("raw", "%FF%FE"),
        ("raw", base64.urlsafe_b64encode(b"\xff\xfe not json").decode()),
        ("1m", _cursor(**{**good, "after": "9999-12-31T23:59:59Z"})),  # overflowed + 1 min
        ("1d", _cursor(**{**good, "after": "2026-01-01T00:00:00", "resolution": "1d"})),  # naive
        ("1m", _cursor(**{**good, "after": "2026-01-01T00:00:00Z", "device_id": BEYOND_BIGINT})),
        ("1m", _cursor(**{**good, "after": "2026-01-01T00:00:00Z", "resolution": "2m"})),
    ):
        response = client.get(
            url, params={"resolution": resolution, "cursor": cursor}, headers=headers
        )
        body = _problem(response, 400, "cursor")
        assert body["errors"][0]["key"] == "cursor"
    mine = _cursor(**{**good, "after": "2026-01-01T00:00:00Z"})
    response = client.get(url, params={"resolution": "1m", "cursor": mine}, headers=headers)
    assert response.status_code == 200, response.text


def test_report_requests_beyond_their_bounds_are_4xx_naming_the_field(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    headers = bearer(keys["operator"])
    days = {"period_start": "2026-01-01", "period_end": "2026-01-02"}
    for body, status, key in (
        ({"period_start": "0001-01-01", "period_end": "0001-01-02"}, 422, "period_start"),
        ({"period_start": "2026-01-01", "period_end": "9999-12-31"}, 422, "period_end"),
        ({**days, "scope": "site", "site_id": BEYOND_BIGINT}, 400, "site_id"),
        ({**days, "scope": "devices", "device_ids": [1, BEYOND_BIGINT]}, 400, "device_ids[1]"),
        ({**days, "scope": "devices", "device_ids": list(range(1, 1002))}, 400, "device_ids"),
    ):
        _problem(client.post("/api/v1/reports", json=body, headers=headers), status, key)
    add_device(engine, "1001", last_seen=now)
    site = add_site(engine)
    response = client.patch(
        "/api/v1/devices/1001", json={"site_id": BEYOND_BIGINT}, headers=headers
    )
    _problem(response, 400, "site_id")
    assert client.get(f"/api/v1/sites/{site}", headers=headers).status_code == 200


def test_a_live_filter_beyond_its_bound_closes_the_socket_with_the_reason(
    client: Client, keys: dict[str, str]
) -> None:
    def ticket() -> str:
        response = client.post("/api/v1/live/ticket", headers=bearer(keys["viewer"]))
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"])

    too_many = ",".join(str(n) for n in range(MAX_LIVE_DEVICES + 1))
    for devices in (too_many, "x" * 65):
        url = f"/api/v1/live?ticket={ticket()}&device={devices}"
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(url) as ws:
            ws.receive_text()
        assert "device: " in str(closed.value.detail)
