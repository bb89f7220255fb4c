"""Devices nobody enrolled: the legacy shared topic only for legacy devices; unknown devices wait.

Against the real writer (in-process and as a process), MariaDB, NATS JetStream and Mosquitto.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text, update
from typer.testing import CliRunner

from conftest import service_env
from pf_testing import (
    FleetBroker,
    Service,
    admit,
    count_rows,
    device_rows,
    publish_all,
    read_rejections,
    sentinel_message,
    wait_for,
)
from powerflow.admission_cli import admit_command
from powerflow_common.admission import (
    LEGACY_NOT_ENROLLED,
    LEGACY_TOPIC,
    UnknownDevices,
    admit_devices,
    waiting_count,
    waiting_devices,
)
from powerflow_common.db.models import DEVICES
from powerflow_common.jetstream import connect_nats
from powerflow_common.settings import Settings
from powerflow_common.wire import Reading, ReadingBatch, json_encoder
from powerflow_writer.store import store_readings

GAP = timedelta(minutes=15)


def admission(engine: Engine, code: str) -> tuple[datetime | None, str | None, bool] | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT admitted_at, admitted_by, legacy_topic FROM devices WHERE code = :c"),
            {"c": code},
        ).first()
    return None if row is None else (row[0], row[1], bool(row[2]))


def revoke(engine: Engine, code: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(DEVICES).where(DEVICES.c.code == code).values(revoked_at=datetime.now(UTC))
        )


def on_legacy(code: str, ts: datetime, power_w: float) -> Reading:
    return Reading(device_code=code, ts=ts, power_w=power_w, topic=LEGACY_TOPIC)


def test_the_legacy_topic_stores_only_legacy_devices_and_never_holds_the_batch_back(
    engine: Engine,
) -> None:
    admit(engine, "proto-1")  # enrolled as legacy
    admit(engine, "modern-1", legacy=False)  # enrolled, its own topic only
    admit(engine, "proto-gone")
    revoke(engine, "proto-gone")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    batch = [
        on_legacy("proto-1", t0, 10.0),
        on_legacy("modern-1", t0, 11.0),  # someone else naming modern-1
        on_legacy("stranger", t0, 12.0),  # unknown on the shared topic: a guess, not a device
        on_legacy("proto-gone", t0, 13.0),
        Reading(
            device_code="modern-1",
            ts=t0 + timedelta(seconds=5),
            power_w=14.0,
            topic="power/modern-1/measurement",
        ),
        Reading(device_code="lab-9", ts=t0, power_w=15.0, topic="power/lab-9/measurement"),
        Reading(device_code="http-1", ts=t0, power_w=16.0),  # over HTTP: no topic
    ]
    result = store_readings(engine, batch, received_at=datetime.now(UTC), max_gap=GAP)
    assert sorted(r.device_code for r in result.not_enrolled) == [
        "modern-1",
        "proto-gone",
        "stranger",
    ]
    assert all(r.topic == LEGACY_TOPIC for r in result.not_enrolled)
    assert result.inserted == 4 and result.refused == []
    assert device_rows(engine, "proto-1") == 1
    assert device_rows(engine, "modern-1") == 1  # its own reading, not the forged one
    with engine.connect() as conn:
        power = conn.execute(
            text(
                "SELECT r.power_w FROM readings r JOIN devices d ON d.id = r.device_id"
                " WHERE d.code = 'modern-1'"
            )
        ).scalar_one()
    assert power == 14.0
    # Nothing registered for the stranger; the others wait for admission.
    assert admission(engine, "stranger") is None
    assert sorted(result.new_waiting) == ["http-1", "lab-9"]
    assert result.waiting_readings == 2
    for code in ("lab-9", "http-1"):
        state = admission(engine, code)
        assert state is not None and state[0] is None and state[2] is False


def test_a_legacy_device_of_the_same_second_is_not_filled_in_by_a_forged_reading(
    engine: Engine,
) -> None:
    admit(engine, "modern-2", legacy=False)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    forged = Reading(device_code="modern-2", ts=t0, temperature_c=99.0, topic=LEGACY_TOPIC)
    genuine = Reading(
        device_code="modern-2", ts=t0, power_w=5.0, topic="power/modern-2/measurement"
    )
    result = store_readings(engine, [forged, genuine], received_at=t0, max_gap=GAP)
    assert result.not_enrolled == [forged] and result.inserted == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT temperature_c FROM readings")).scalar_one() is None


def test_admitting_is_all_or_nothing_idempotent_and_lists_what_waits(engine: Engine) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    store_readings(
        engine,
        [Reading(device_code=f"w{i}", ts=t0 + timedelta(seconds=i), power_w=1.0) for i in range(3)]
        + [Reading(device_code="w0", ts=t0 + timedelta(seconds=10), power_w=1.0)],
        received_at=t0,
        max_gap=GAP,
    )
    with engine.connect() as conn:
        assert waiting_count(conn) == 3
        listed = waiting_devices(conn, 10)
    assert [d.code for d in listed] == ["w0", "w2", "w1"]  # the latest seen first
    assert [d.readings for d in listed] == [2, 1, 1]

    try:
        admit_devices(engine, ["w1", "nobody"], by="test")
    except UnknownDevices as exc:
        assert exc.codes == ["nobody"] and "nothing to admit" in str(exc)
    else:
        raise AssertionError("an unknown code must refuse the whole admission")
    with engine.connect() as conn:
        assert waiting_count(conn) == 3  # nothing admitted

    [first] = admit_devices(engine, ["w1"], by="alice")
    assert first.newly and first.admitted_by == "alice"
    [again] = admit_devices(engine, ["w1"], by="bob")
    assert not again.newly and again.admitted_by == "alice"
    with engine.connect() as conn:
        assert [d.code for d in waiting_devices(conn, 10)] == ["w0", "w2"]


def test_the_admit_command_admits_and_refuses_unknown_codes(
    engine: Engine, settings: Settings
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    store_readings(
        engine, [Reading(device_code="cli-1", ts=t0, power_w=1.0)], received_at=t0, max_gap=GAP
    )
    env = service_env(settings)
    runner = CliRunner()
    from typer import Typer

    app = Typer()
    app.command()(admit_command)
    refused = runner.invoke(app, ["cli-1", "ghost"], env=env)
    assert refused.exit_code == 1, refused.output
    assert "ghost" in refused.output and admission(engine, "cli-1")[0] is None  # type: ignore[index]
    done = runner.invoke(app, ["cli-1", "--by", "ops"], env=env)
    assert done.exit_code == 0, done.output
    assert "admitted cli-1" in done.output
    state = admission(engine, "cli-1")
    assert state is not None and state[0] is not None and state[1] == "ops"


def test_over_mqtt_legacy_topic_readings_of_others_are_dead_lettered_and_the_rest_stored(
    running: dict[str, Service], broker: FleetBroker, engine: Engine, settings: Settings
) -> None:
    admit(engine, "proto-7")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)

    def original(code: str, i: int, topic: str = LEGACY_TOPIC) -> tuple[str, str]:
        ts = (t0 + timedelta(seconds=5 * i)).isoformat()
        return topic, json.dumps({"deviceCode": code, "timestamp": ts, "electric": 100 + i})

    messages = [original("proto-7", i) for i in range(10)]
    messages += [original("intruder", i) for i in range(3)]
    messages += [original("lab-3", i, "power/lab-3/measurement") for i in range(4)]
    publish_all(broker.fleet_url, [*messages, sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 60, what="the sentinel stored")
    wait_for(lambda: count_rows(engine) == 15, 30, what="proto-7's and lab-3's readings")
    records = read_rejections(settings.nats_url, settings.names.rejected_stream, 3, 30)
    assert len(records) == 3
    for record in records:
        assert record.reason == LEGACY_NOT_ENROLLED and record.stage == "writer"
        assert record.topic == LEGACY_TOPIC
        assert record.reading is not None and record.reading.device_code == "intruder"
        assert record.reading.topic == LEGACY_TOPIC and record.reading.power_w is not None
    assert admission(engine, "intruder") is None
    state = admission(engine, "lab-3")
    assert state is not None and state[0] is None  # waiting
    assert "device_waiting_for_admission" in running["writer"].log_text()


def test_one_jetstream_message_mixing_refused_and_stored_readings_is_acked_once(
    running: dict[str, Service], engine: Engine, settings: Settings
) -> None:
    admit(engine, "proto-8")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    batch = [
        on_legacy("proto-8", t0, 1.0),
        on_legacy("forger", t0, 2.0),
        on_legacy("proto-8", t0 + timedelta(seconds=5), 3.0),
    ]

    async def publish() -> None:
        nc = await connect_nats(settings, name="pf-test")
        body = json_encoder.encode(ReadingBatch(readings=batch, ingested_at=t0, source="test"))
        await nc.jetstream().publish(settings.names.readings_subject("test"), body)
        await nc.close()

    asyncio.run(publish())
    wait_for(lambda: device_rows(engine, "proto-8") == 2, 30, what="proto-8's two readings")
    [record] = read_rejections(settings.nats_url, settings.names.rejected_stream, 1, 30)
    assert record.reason == LEGACY_NOT_ENROLLED
    assert record.reading is not None and record.reading.device_code == "forger"
