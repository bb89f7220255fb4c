"""Contract: what the firmware's portable core encodes, ingest accepts and the pipeline stores."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from pf_testing import FleetBroker, Service, admit, count_rows, publish_all, wait_for
from powerflow_common.db.models import UtcDateTime
from powerflow_common.formats import decode_message
from powerflow_common.formats.original import ORIGINAL
from powerflow_common.validation import Limits

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


@pytest.fixture(scope="module")
def firmware_payloads() -> list[tuple[str, str]]:
    """Lines ``topic<TAB>payload`` from the host-built encoder, stamped with the current time."""
    if shutil.which("g++") is None:
        pytest.fail("g++ is required to build the firmware's core (deploy/packages.txt)")
    subprocess.run(["make", "-s", "-C", str(FIRMWARE), "emit"], check=True, capture_output=True)
    now_ms = str(int(time.time() * 1000))
    out = subprocess.run(
        [str(FIRMWARE / "build" / "emit_payloads"), now_ms],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [tuple(line.split("\t", 1)) for line in out.splitlines() if line.strip()]
    assert len(lines) >= 3
    return [(topic, payload) for topic, payload in lines]


def test_every_firmware_payload_passes_ingest_validation(
    firmware_payloads: list[tuple[str, str]],
) -> None:
    now = datetime.now(UTC)
    for topic, payload in firmware_payloads:
        [reading] = decode_message([ORIGINAL], topic, payload.encode(), now, Limits())
        body = json.loads(payload)
        assert reading.device_code == body["deviceCode"]
        assert reading.power_w == body.get("electric")
        assert reading.energy_wh == body.get("energy_wh")
        assert reading.temperature_c == body.get("temp")
        assert reading.seq == body.get("seq")
        assert reading.firmware == body.get("fw")


def test_pipeline_stores_the_values_the_firmware_sent(
    firmware_payloads: list[tuple[str, str]],
    running: dict[str, Service],
    broker: FleetBroker,
    engine: Engine,
) -> None:
    # The host build emits both topics (its own and, as legacy, the shared one): enrolled so.
    admit(engine, *{json.loads(payload)["deviceCode"] for _, payload in firmware_payloads})
    publish_all(broker.fleet_url, firmware_payloads)
    wait_for(lambda: count_rows(engine) == len(firmware_payloads), 30, what="firmware rows")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.code, r.ts, r.power_w, r.energy_wh, r.voltage_v, r.current_a,"
                " r.temperature_c, r.humidity_pct, r.brightness_lux, r.seq, r.firmware"
                " FROM readings r JOIN devices d ON d.id = r.device_id"
            ).columns(ts=UtcDateTime())  # typed: SQLite returns an untyped DATETIME as text
        ).all()
    stored = {(row.code, row.seq): row for row in rows}
    for _topic, payload in firmware_payloads:
        body = json.loads(payload)
        row = stored[(body["deviceCode"], body["seq"])]
        assert row.ts.replace(tzinfo=UTC) == datetime.fromisoformat(body["timestamp"])
        assert (row.power_w, row.energy_wh, row.voltage_v, row.current_a) == (
            body.get("electric"),
            body.get("energy_wh"),
            body.get("voltage"),
            body.get("current"),
        )
        assert (row.temperature_c, row.humidity_pct, row.brightness_lux) == (
            body.get("temp"),
            body.get("humidity"),
            body.get("brightness"),
        )
        assert row.firmware == body["fw"]
