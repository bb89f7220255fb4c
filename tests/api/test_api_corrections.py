"""Corrections over HTTP: operator-only, audited, bounded; and end to end through the pipeline."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import add_device, add_readings, bearer
from sqlalchemy import Engine, func, select

from conftest import service_env
from pf_testing import Service, consumer_idle, count_rows, wait_for
from powerflow.broker import free_port
from powerflow_common.db.models import DEVICES, HOURLY_STATS, READING_CORRECTIONS, READINGS
from powerflow_common.energy import hour_floor
from powerflow_common.settings import Settings

Client = TestClient[Any]

# The correction path's SQL (a write transaction, timestamps matched to the microsecond) differs
# between the engines: check it on both. The test reads through the models' tables, whose
# UtcDateTime binds a timestamp in the stored form on each engine (an untyped text() parameter
# reaches SQLite without the '.000000' SQLAlchemy stores, and matches no row).
pytestmark = pytest.mark.both_backends

TS = datetime(2026, 11, 29, 7, 10, 30, tzinfo=UTC)
URL = "/api/v1/devices/fix-1/readings/2026-11-29T07:10:30Z/corrections"


@pytest.fixture
def fix_device(engine: Engine) -> int:
    device_id = add_device(engine, "fix-1", last_seen=TS)
    add_readings(engine, device_id, [(TS, 1000.0)], received_at=TS)
    return device_id


def nats_ready(client: Client) -> None:
    wait_for(lambda: client.get("/readyz").json()["nats"], 20, what="the API to reach NATS")


def stored_power(engine: Engine, device_id: int) -> float:
    with engine.connect() as conn:
        return float(
            conn.execute(
                select(READINGS.c.power_w).where(
                    READINGS.c.device_id == device_id, READINGS.c.ts == TS
                )
            ).scalar_one()
        )


def test_only_operators_correct_and_viewers_read_the_audit(
    client: Client, keys: dict[str, str], fix_device: int, engine: Engine
) -> None:
    body = {"values": {"power_w": 1600}, "reason": "meter misread"}
    for role in ("viewer", "device"):
        refused = client.post(URL, json=body, headers=bearer(keys[role]))
        assert refused.status_code == 403, refused.text
    assert stored_power(engine, fix_device) == 1000.0
    nats_ready(client)
    made = client.post(URL, json=body, headers=bearer(keys["operator"]))
    assert made.status_code == 201, made.text
    result = made.json()
    assert result["totals_republished"] is True
    assert result["hours"] == ["2026-11-29T07:00:00Z"]
    [change] = result["changed"]
    assert (change["column"], change["old_value"], change["new_value"]) == ("power_w", 1000, 1600)
    assert change["corrected_by"] == "test-operator"
    assert stored_power(engine, fix_device) == 1600.0

    again = client.post(URL, json=body, headers=bearer(keys["operator"]))
    assert again.status_code == 200 and again.json()["unchanged"] == ["power_w"]
    # The same reading named in Seoul time, '+' written as %2B in the path.
    seoul = URL.replace("2026-11-29T07:10:30Z", "2026-11-29T16:10:30%2B09:00")
    same = client.post(seoul, json=body, headers=bearer(keys["operator"]))
    assert same.status_code == 200 and same.json()["ts"] == "2026-11-29T07:10:30Z", same.text

    listed = client.get("/api/v1/devices/fix-1/corrections", headers=bearer(keys["viewer"]))
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == change["id"] and item["reason"] == "meter misread"
    assert item["totals_republished_at"] is not None
    device_list = client.get("/api/v1/devices/fix-1/corrections", headers=bearer(keys["device"]))
    assert device_list.status_code == 403


def test_corrections_page_newest_first_within_bounds(
    client: Client, keys: dict[str, str], fix_device: int
) -> None:
    operator = bearer(keys["operator"])
    nats_ready(client)
    for value in (1100, 1200, 1300):
        made = client.post(
            URL, json={"values": {"power_w": value}, "reason": "r"}, headers=operator
        )
        assert made.status_code == 201, made.text
    first = client.get("/api/v1/devices/fix-1/corrections?limit=2", headers=operator).json()
    assert [i["new_value"] for i in first["items"]] == [1300, 1200]
    assert [i["old_value"] for i in first["items"]] == [1200, 1100]
    rest = client.get(
        f"/api/v1/devices/fix-1/corrections?limit=2&before_id={first['next_before_id']}",
        headers=operator,
    ).json()
    assert [i["new_value"] for i in rest["items"]] == [1100] and rest["next_before_id"] is None
    future = client.get(
        "/api/v1/devices/fix-1/corrections?since=2199-01-01T00:00:00Z", headers=operator
    ).json()
    assert future["items"] == []
    ancient = client.get(
        "/api/v1/devices/fix-1/corrections?since=0001-01-01T00:00:00Z", headers=operator
    )
    # Outside the API's one time range (powerflow_common.bounds): a 400 naming the parameter.
    assert ancient.status_code == 400 and "since" in ancient.text
    for query in ("limit=0", "limit=1001", f"before_id={2**64}", "before_id=0", "since=yesterday"):
        bad = client.get(f"/api/v1/devices/fix-1/corrections?{query}", headers=operator)
        assert bad.status_code == 400, (query, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")


def test_bad_corrections_answer_4xx_with_a_clear_problem_and_change_nothing(
    client: Client, keys: dict[str, str], fix_device: int, engine: Engine
) -> None:
    operator = bearer(keys["operator"])
    ok = {"values": {"power_w": 1600}, "reason": "r"}
    cases: list[tuple[str, Any, int, str]] = [
        ("/api/v1/devices/nope/readings/2026-11-29T07:10:30Z/corrections", ok, 404, "nope"),
        (URL.replace("07:10:30", "07:10:31"), ok, 404, "no reading"),
        (URL.replace("2026-11-29T07:10:30Z", "not-a-time"), ok, 400, "ISO 8601"),
        (URL.replace("07:10:30Z", "07:10:30.000001Z"), ok, 422, "millisecond"),
        (URL, {"values": {"device_id": 3}, "reason": "r"}, 422, "power_w"),
        (URL, {"values": {"power_w": None}, "reason": "r"}, 422, "emptied"),
        (URL, {"values": {"power_w": -1}, "reason": "r"}, 422, "out_of_range"),
        (URL, {"values": {"seq": 4}, "reason": "r"}, 422, "seq"),
        (URL, {"values": {}, "reason": "r"}, 422, "at least one"),
        (URL, {"values": {"power_w": 1600}, "reason": ""}, 400, "reason"),
        (URL, {"values": {"power_w": 1600}}, 400, "reason"),
        (URL, {"values": {"power_w": "lots"}, "reason": "r"}, 400, "values"),
        (URL, {**ok, "extra": 1}, 400, "extra"),
    ]
    for url, body, status, phrase in cases:
        response = client.post(url, json=body, headers=operator)
        assert response.status_code == status, (url, body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert phrase in response.json()["detail"], (body, response.json()["detail"])
    assert stored_power(engine, fix_device) == 1000.0
    with engine.connect() as conn:
        corrections = select(func.count()).select_from(READING_CORRECTIONS)
        assert conn.execute(corrections).scalar_one() == 0


# --- end to end: HTTP ingest -> writer -> aggregator, a conflict, then the correction -----


def writer_conflicts(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r"^powerflow_writer_conflicting_duplicates_total ([0-9.e+]+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def hour_stats(engine: Engine, code: str, hour: datetime) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(HOURLY_STATS)
            .join(DEVICES, DEVICES.c.id == HOURLY_STATS.c.device_id)
            .where(DEVICES.c.code == code, HOURLY_STATS.c.hour_start == hour)
        ).first()


def test_a_conflicting_http_batch_keeps_the_stored_value_then_a_correction_changes_it_and_its_hour(
    make_client: Callable[..., Client],
    keys: dict[str, str],
    engine: Engine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    writer_env = service_env(settings)
    writer_env["POWERFLOW_WRITER_METRICS_PORT"] = str(metrics_port)
    writer = Service("writer", writer_env, tmp_path)
    aggregator = Service("aggregator", service_env(settings), tmp_path)
    # Ten past the hour two hours ago: the minute of readings touches that hour only.
    start = hour_floor(datetime.now(UTC)) - timedelta(hours=2) + timedelta(minutes=10)
    hour = hour_floor(start)
    middle = start + timedelta(seconds=30)
    device = {"Authorization": f"Bearer {keys['device']}"}
    try:
        writer.start()
        aggregator.start()
        writer.wait_logged("writer_starting")
        aggregator.wait_logged("aggregator_starting")
        client = make_client(nats_url=settings.nats_url, namespace=settings.namespace)
        nats_ready(client)

        # 13 readings at 1,000 W, 5 s apart: 60 s x 1,000 W = 60,000 Ws = 0.016667 kWh.
        first = [
            {
                "device_code": "fix-e2e",
                "ts": (start + timedelta(seconds=5 * i)).isoformat(),
                "power_w": 1000.0,
            }
            for i in range(13)
        ]
        sent = client.post("/api/v1/ingest", json={"readings": first}, headers=device)
        assert sent.status_code == 202, sent.text
        wait_for(lambda: count_rows(engine) == 13, 30, what="13 rows")
        before = wait_for(
            lambda: (row := hour_stats(engine, "fix-e2e", hour)) and row.samples >= 12 and row,
            60,
            what="the hour rolled up",
        )
        assert before.energy_kwh == pytest.approx(60_000 / 3.6e6, rel=1e-9)

        # The gateway sends the middle reading again with another value: a conflict, kept out.
        second = [{"device_code": "fix-e2e", "ts": middle.isoformat(), "power_w": 1600.0}]
        resent = client.post("/api/v1/ingest", json={"readings": second}, headers=device)
        assert resent.status_code == 202, resent.text
        wait_for(lambda: writer_conflicts(metrics_port) >= 1, 30, what="the writer's conflict")
        names = settings.names
        wait_for(
            lambda: consumer_idle(settings.nats_url, names.readings_stream, names.writer_consumer),
            30,
            what="the writer idle",
        )
        with engine.connect() as conn:
            kept = conn.execute(
                select(READINGS.c.power_w).where(READINGS.c.ts == middle)
            ).scalar_one()
        assert kept == 1000.0
        assert writer_conflicts(metrics_port) == 1
        # Logged with both values, so an operator can see what was kept out.
        writer.wait_logged("reading_conflict")
        [logged] = [
            json.loads(line)
            for line in writer.log_text().splitlines()
            if '"reading_conflict"' in line
        ]
        assert (logged["device_code"], logged["column"], logged["stored"], logged["incoming"]) == (
            "fix-e2e",
            "power_w",
            1000.0,
            1600.0,
        )

        # The operator confirms 1,600 W. Two 5 s intervals now average 1,300 W instead of
        # 1,000 W: +2 x 5 s x 300 W = +3,000 Ws, so 63,000 Ws = 0.0175 kWh, 0.008365 kg CO2.
        url = f"/api/v1/devices/fix-e2e/readings/{middle.isoformat().replace('+00:00', 'Z')}"
        corrected = client.post(
            f"{url}/corrections",
            json={"values": {"power_w": 1600.0}, "reason": "gateway resent the right value"},
            headers=bearer(keys["operator"]),
        )
        assert corrected.status_code == 201, corrected.text
        assert corrected.json()["totals_republished"] is True
        [change] = corrected.json()["changed"]
        assert (change["old_value"], change["new_value"]) == (1000.0, 1600.0)
        assert change["corrected_by"] == "test-operator"
        after = wait_for(
            lambda: (
                (row := hour_stats(engine, "fix-e2e", hour))
                and row.energy_kwh > before.energy_kwh
                and row
            ),
            60,
            what="the hour recomputed after the correction",
        )
    finally:
        writer.stop()
        aggregator.stop()
    assert after.energy_kwh == pytest.approx(0.0175, rel=1e-9)
    assert after.co2_kg == pytest.approx(0.008365, rel=1e-9)
    assert after.power_max_w == 1600.0
    with engine.connect() as conn:
        audit = conn.execute(
            select(
                READING_CORRECTIONS.c.old_value,
                READING_CORRECTIONS.c.new_value,
                READING_CORRECTIONS.c.corrected_by,
            )
        ).one()
    assert tuple(audit) == (1000.0, 1600.0, "test-operator")
