"""Integrity at ingest's edge: content ids, streams at their byte limit, stream migration."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StreamConfig
from sqlalchemy import Engine, func, select, text

from conftest import service_env
from pf_testing import (
    FleetBroker,
    Service,
    admit,
    count_rows,
    fleet_codes,
    fleet_messages,
    publish_all,
    wait_for,
)
from powerflow.broker import free_port
from powerflow_common.db.models import DEVICES, READINGS
from powerflow_common.jetstream import (
    ensure_streams,
    migrate_streams,
    migration_stream_name,
    migration_subject,
    stream_configs,
    stream_problems,
)
from powerflow_common.msgids import readings_msg_id
from powerflow_common.settings import STREAM_MIN_BYTES, Settings
from powerflow_common.wire import Reading, ReadingBatch, batch_decoder, json_encoder


def esphome_row(engine: Engine, code: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT r.ts, r.power_w, r.energy_wh FROM readings r"
                    " JOIN devices d ON d.id = r.device_id WHERE d.code = :code"
                ),
                {"code": code},
            )
        ]


def with_energy(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]] | None:
    """The rows once one of them carries the energy value."""
    return rows if any(row[2] is not None for row in rows) else None


def test_esphome_power_and_energy_of_one_second_in_two_batches_are_one_row_with_both(
    settings: Settings, broker: FleetBroker, engine: Engine, tmp_path: Path
) -> None:
    # One message per batch and no linger: power and energy go out as two JetStream messages.
    env = service_env(
        settings, POWERFLOW_INGEST_BATCH_MAX_MESSAGES="1", POWERFLOW_INGEST_BATCH_LINGER_MS="0"
    )
    ingest, writer = Service("ingest", env, tmp_path), Service("writer", env, tmp_path)
    try:
        writer.start()
        ingest.start().wait_logged("mqtt_subscribed")
        devices = [f"esp{i}" for i in range(5)]
        for i, device in enumerate(devices):
            # ESPHome stamps on arrival, to the whole second: start early in a fresh second.
            while datetime.now(UTC).microsecond > 300_000:
                time.sleep(0.01)
            publish_all(
                broker.fleet_url,
                [
                    (f"{device}/sensor/power/state", f"{100 + i}.5"),
                    (f"{device}/sensor/energy/state", f"{5000 + i}"),
                ],
                window=1,  # the broker acks the power message before energy is sent
            )
        for i, device in enumerate(devices):
            rows = wait_for(
                lambda code=device: with_energy(esphome_row(engine, code)),  # type: ignore[misc]
                30,
                what=f"{device}'s energy value",
            )
            assert len(rows) == 1, rows
            assert (rows[0][1], rows[0][2]) == (100 + i + 0.5, 5000 + i)
        # Two JetStream messages per device, none taken for the other's duplicate.
        assert "jetstream_duplicate_publish" not in ingest.log_text()
    finally:
        ingest.stop()
        writer.stop()


def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of a process's Prometheus /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+) ([0-9.e+-]+)$", body, re.MULTILINE)}


def readings_in_stream(settings: Settings) -> tuple[int, int, int]:
    """(readings, messages, bytes) in READINGS now."""

    async def read() -> tuple[int, int, int]:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        info = await js.stream_info(settings.names.readings_stream)
        readings = 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if not info.state.messages:
                break
            stored = await js.get_msg(settings.names.readings_stream, seq)
            readings += len(batch_decoder.decode(stored.data or b"").readings)
        await nc.close()
        return readings, info.state.messages, info.state.bytes

    return asyncio.run(read())


def test_ingest_holds_at_a_full_stream_and_recovers_when_the_writer_frees_space(
    settings: Settings, broker: FleetBroker, engine: Engine, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = service_env(
        settings,
        POWERFLOW_READINGS_MAX_BYTES=str(STREAM_MIN_BYTES),
        POWERFLOW_INGEST_BATCH_MAX_MESSAGES="50",
    )
    env["POWERFLOW_INGEST_METRICS_PORT"] = str(metrics_port)
    ingest, writer = Service("ingest", env, tmp_path), Service("writer", env, tmp_path)
    # 8,000 readings are about 1.3 MB in the stream: more than its 1 MiB limit.
    admit(engine, *fleet_codes(20))
    messages = list(fleet_messages(20, 400))
    expected_power_w = sum(json.loads(body)["electric"] for _, body in messages)
    try:
        ingest.start().wait_logged("mqtt_subscribed")
        publish_all(broker.fleet_url, messages)
        ingest.wait_logged("jetstream_stream_full", timeout_s=60)

        def held() -> tuple[int, int, int, dict[str, float]] | None:
            stored, _messages, size = readings_in_stream(settings)
            values = scrape(metrics_port)
            unacked = int(values["powerflow_ingest_unacked_messages"])
            # Every reading is either in the stream or unacknowledged at the broker.
            return (stored, unacked, size, values) if stored + unacked == len(messages) else None

        _stored, unacked, size, values = wait_for(held, 30, what="ingest to settle while held")
        assert size <= STREAM_MIN_BYTES
        assert unacked > 0 and values["powerflow_ingest_stream_full"] == 1
        assert count_rows(engine) == 0

        writer.start()
        wait_for(lambda: count_rows(engine) == len(messages), 120, what="every reading stored")
        with engine.connect() as conn:
            # COUNT(DISTINCT a, b) is MySQL's; a distinct subquery counts keys on both.
            keys_seen = select(READINGS.c.device_id, READINGS.c.ts).distinct().subquery()
            power_sum = conn.execute(select(func.sum(READINGS.c.power_w))).scalar_one()
            keys = conn.execute(select(func.count()).select_from(keys_seen)).scalar_one()
        assert keys == len(messages)
        assert abs(float(power_sum) - expected_power_w) < 1e-6
        wait_for(
            lambda: scrape(metrics_port)["powerflow_ingest_stream_full"] == 0,
            30,
            what="the stream-full gauge to clear",
        )
        assert "jetstream_publish_recovered" in ingest.log_text()
        # Work-queue: what the writer acked is gone from the stream.
        wait_for(lambda: readings_in_stream(settings)[1] == 0, 30, what="READINGS to empty")
    finally:
        ingest.stop()
        writer.stop()


def test_powerflow_streams_migrates_a_limits_stream_keeping_what_no_consumer_acked(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    names = settings.names
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    batches = [
        [Reading(device_code=f"mig{b}", ts=t0 + timedelta(seconds=5 * i), power_w=10.0 + i)]
        for b in range(3)
        for i in range(4)
    ]

    async def old_install() -> list[str]:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        # READINGS as an older powerflow made it: limits retention, no byte limit.
        [readings, *_] = stream_configs(settings)
        readings.retention = RetentionPolicy.LIMITS
        readings.max_bytes = -1
        readings.discard = None
        await js.add_stream(readings)
        for batch in batches:
            body = json_encoder.encode(ReadingBatch(readings=batch, ingested_at=datetime.now(UTC)))
            await js.publish(
                names.readings_subject("0"), body, headers={"Nats-Msg-Id": readings_msg_id(batch)}
            )
        # The writer had stored (and acked) the first two messages.
        await js.add_consumer(
            names.readings_stream,
            ConsumerConfig(
                durable_name=names.writer_consumer,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=names.readings_wildcard,
                max_deliver=10,  # the server's own limit, as older writers set it
            ),
        )
        sub = await js.pull_subscribe_bind(names.writer_consumer, stream=names.readings_stream)
        for msg in await sub.fetch(2, timeout=5):
            await msg.ack_sync()
        # A worker starting now leaves it alone and says so; readiness says it too.
        await ensure_streams(js, settings)
        info = await js.stream_info(names.readings_stream)
        assert info.config.retention == RetentionPolicy.LIMITS
        problems = await stream_problems(js, settings)
        await nc.close()
        return problems

    [problem] = asyncio.run(old_install())
    assert "powerflow streams" in problem

    result = subprocess.run(
        [sys.executable, "-m", "powerflow.cli", "streams"],
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "READINGS: migrated to workqueue, 10 unconsumed messages kept" in output, output

    async def after() -> tuple[Any, Any, list[str], bool]:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        info = await js.stream_info(names.readings_stream)
        consumer = await js.consumer_info(names.readings_stream, names.writer_consumer)
        problems = await stream_problems(js, settings)
        try:
            await js.stream_info(f"{names.readings_stream}_MIGRATING")
            parked_left = True
        except nats.js.errors.NotFoundError:
            parked_left = False
        await nc.close()
        return info, consumer, problems, parked_left

    info, consumer, problems, parked_left = asyncio.run(after())
    assert info.config.retention == RetentionPolicy.WORK_QUEUE
    assert info.config.max_bytes == settings.readings_max_bytes
    assert info.state.messages == 10 and consumer.num_pending == 10
    # Rebuilt to redeliver without limit: the worker dead-letters by its own count.
    assert consumer.config.max_deliver == -1
    assert problems == [] and not parked_left

    writer = Service("writer", service_env(settings), tmp_path).start()
    try:
        wait_for(lambda: count_rows(engine) == 10, 60, what="the ten kept readings stored")
        with engine.connect() as conn:
            stored = set(
                conn.execute(
                    select(DEVICES.c.code, READINGS.c.ts).join(
                        DEVICES, DEVICES.c.id == READINGS.c.device_id
                    )
                )
            )
        expected = {(r.device_code, r.ts) for b in batches[2:] for r in b}
        assert stored == expected
    finally:
        writer.stop()


WEEK_S = 7 * 24 * 3600
FLEET_DEVICES = 20  # `make run`'s simulated fleet
FLEET_INTERVAL_S = 5


def test_a_week_of_a_20_device_fleet_never_reaches_the_default_readings_limit(
    settings: Settings, broker: FleetBroker, tmp_path: Path
) -> None:
    # Worst case for size: one reading per JetStream message (a quiet fleet, no batching),
    # and no writer at all for the week (with the writer up, work-queue keeps ~0 bytes).
    env = service_env(settings, POWERFLOW_INGEST_BATCH_MAX_MESSAGES="1")
    ingest = Service("ingest", env, tmp_path)
    sample = list(fleet_messages(FLEET_DEVICES, 10))
    try:
        ingest.start().wait_logged("mqtt_subscribed")
        publish_all(broker.fleet_url, sample)
        stored, messages, size = wait_for(
            lambda: (r := readings_in_stream(settings))[0] == len(sample) and r,
            60,
            what="the sample in READINGS",
        )
    finally:
        ingest.stop()
    assert messages == len(sample)  # one per message, as intended
    bytes_per_reading = size / stored
    week_bytes = bytes_per_reading * FLEET_DEVICES * WEEK_S / FLEET_INTERVAL_S
    print(f"{bytes_per_reading:.0f} B/reading in READINGS; a week of 20 devices: {week_bytes:,.0f}")
    assert week_bytes < Settings.model_fields["readings_max_bytes"].default


def log_events(service: Service) -> list[dict[str, Any]]:
    """A process's JSON log lines (anything else it printed is left out)."""
    events = []
    for line in service.log_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_rejected_at_its_byte_limit_drops_its_oldest_records_and_ingest_counts_them(
    settings: Settings, broker: FleetBroker, tmp_path: Path
) -> None:
    env = service_env(
        settings,
        POWERFLOW_REJECTED_MAX_BYTES=str(STREAM_MIN_BYTES),
        POWERFLOW_STREAM_CHECK_INTERVAL_S="0.5",
    )
    ingest = Service("ingest", env, tmp_path)
    # 30 bad messages of 60 KB each, about 80 KB as records: 2.4 MB into a 1 MiB stream.
    flood = [("power/measurement", bytes([i]) * 60_000) for i in range(30)]

    def rejected_state() -> tuple[int, int, int]:
        async def read() -> tuple[int, int, int]:
            nc = await nats.connect(settings.nats_url)
            info = await nc.jetstream().stream_info(settings.names.rejected_stream)
            await nc.close()
            return info.state.first_seq, info.state.last_seq, info.state.bytes

        return asyncio.run(read())

    try:
        ingest.start().wait_logged("mqtt_subscribed")
        publish_all(broker.fleet_url, flood)
        first_seq, _last_seq, size = wait_for(
            lambda: (s := rejected_state())[1] == len(flood) and s, 60, what="every record"
        )
        assert size <= STREAM_MIN_BYTES and first_seq > 1
        ingest.wait_logged("rejected_records_evicted", timeout_s=30)

        def counted() -> int:
            # Evictions before the watch's first look are said once, not counted.
            return sum(
                line["records"]
                for line in log_events(ingest)
                if line.get("event")
                in ("rejected_records_evicted", "rejected_evicted_before_start")
            )

        # Every record that went is counted once, whatever steps the watch saw it go in.
        wait_for(lambda: counted() == first_seq - 1, 30, what="every eviction counted")
        assert counted() == first_seq - 1
    finally:
        ingest.stop()


def test_an_interrupted_migration_is_finished_by_running_it_again(settings: Settings) -> None:
    names = settings.names
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    parked = [
        [Reading(device_code="resume", ts=t0 + timedelta(seconds=i), power_w=1.0)] for i in (0, 5)
    ]

    async def run() -> tuple[list[str], list[str], int, bool]:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        # The state a migration leaves when it dies after deleting the old stream: only
        # the parked copies exist.
        temp = migration_stream_name(names.readings_stream)
        await js.add_stream(
            StreamConfig(name=temp, subjects=[migration_subject(names.readings_stream, ">")])
        )
        for seq, batch in enumerate(parked, start=1):
            body = json_encoder.encode(ReadingBatch(readings=batch, ingested_at=t0))
            await js.publish(
                migration_subject(names.readings_stream, names.readings_subject("0")),
                body,
                headers={"Nats-Msg-Id": f"migrated-{names.readings_stream}-{seq}"},
            )
        first = await migrate_streams(js, settings)
        second = await migrate_streams(js, settings)  # nothing left to do
        info = await js.stream_info(names.readings_stream)
        try:
            await js.stream_info(temp)
            temp_left = True
        except nats.js.errors.NotFoundError:
            temp_left = False
        stored = [
            batch_decoder.decode((await js.get_msg(names.readings_stream, seq)).data or b"")
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
        await nc.close()
        assert info.config.retention == RetentionPolicy.WORK_QUEUE
        assert [b.readings for b in stored] == parked
        return first, second, info.state.messages, temp_left

    first, second, messages, temp_left = asyncio.run(run())
    assert any("2 unconsumed messages kept" in line for line in first), first
    assert second == [] and messages == 2 and not temp_left


def test_a_running_writer_keeps_storing_across_a_stream_migration(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    names = settings.names
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    async def publish(offset_s: int) -> None:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        if offset_s == 0:  # READINGS as an older powerflow made it
            [readings, *_] = stream_configs(settings)
            readings.retention, readings.max_bytes, readings.discard = (
                RetentionPolicy.LIMITS,
                -1,
                None,
            )
            await js.add_stream(readings)
        batch = [Reading(device_code="live", ts=t0 + timedelta(seconds=offset_s), power_w=2.0)]
        body = json_encoder.encode(ReadingBatch(readings=batch, ingested_at=t0))
        await js.publish(
            names.readings_subject("0"), body, headers={"Nats-Msg-Id": readings_msg_id(batch)}
        )
        await nc.close()

    asyncio.run(publish(0))
    writer = Service("writer", service_env(settings), tmp_path).start()
    try:
        wait_for(lambda: count_rows(engine) == 1, 60, what="the first reading stored")
        result = subprocess.run(
            [sys.executable, "-m", "powerflow.cli", "streams"],
            env=service_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "migrated to workqueue" in result.stdout + result.stderr, result.stderr
        asyncio.run(publish(5))
        # The same writer process, pulling from its recreated consumer.
        wait_for(lambda: count_rows(engine) == 2, 60, what="a reading after the migration")
        assert writer.alive
    finally:
        writer.stop()
