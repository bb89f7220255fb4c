"""Whatever one message does, the writer stores the others; one rule for device codes.

Against the real services: MariaDB (also a database created with its case-insensitive
default collation), NATS JetStream, Mosquitto, and ``powerflow ingest``/``writer`` processes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, make_url, text
from structlog.testing import capture_logs

from conftest import SERVER_URL, service_env
from pf_testing import (
    FleetBroker,
    Service,
    admit,
    consumer_idle,
    count_rows,
    device_rows,
    publish_all,
    read_rejections,
    wait_for,
)
from powerflow_common.consumers import MAX_DELIVER_EXCEEDED, TEST_HANG_ENV
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.jetstream import connect_nats, ensure_streams
from powerflow_common.settings import Settings
from powerflow_common.wire import (
    Bucket,
    Persisted,
    Reading,
    ReadingBatch,
    batch_decoder,
    json_encoder,
)
from powerflow_writer.consumer import Writer, ensure_writer_consumer
from powerflow_writer.store import store_readings

pytestmark = pytest.mark.slow

MAC = "A4:CF:12:9B:00:01"
MAC_LOWER = "a4:cf:12:9b:00:01"
MAC_DASHED = "a4-cf-12-9b-00-01"


@contextmanager
def default_collation_database() -> Iterator[str]:
    """A database made as docker's MARIADB_DATABASE makes it: the server's default collation."""
    url = f"{SERVER_URL}/pf_test_ci_{uuid.uuid4().hex[:10]}"
    server = create_engine(SERVER_URL)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{make_url(url).database}`"))
    server.dispose()
    try:
        yield url
    finally:
        drop_database(url)


def code_collation(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT collation_name FROM information_schema.columns WHERE "
                    "table_schema = DATABASE() AND table_name = 'devices' AND column_name = 'code'"
                )
            ).scalar_one()
        )


def device_codes(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            str(c) for c in conn.execute(text("SELECT code FROM devices ORDER BY code")).scalars()
        ]


def publish_batches(settings: Settings, batches: list[list[Reading]]) -> list[bytes]:
    """Publish reading batches straight to READINGS (as an older ingest would); their bytes."""
    bodies = [
        json_encoder.encode(
            ReadingBatch(readings=batch, ingested_at=datetime.now(UTC), source="test")
        )
        for batch in batches
    ]

    async def publish() -> None:
        nc = await connect_nats(settings, name="pf-test")
        js = nc.jetstream()
        await ensure_streams(js, settings)
        for body in bodies:
            await js.publish(settings.names.readings_subject("test"), body)
        await nc.close()

    asyncio.run(publish())
    return bodies


def redelivered(settings: Settings) -> int:
    import nats

    async def check() -> int:
        nc = await nats.connect(settings.nats_url)
        try:
            info = await nc.jetstream().consumer_info(
                settings.names.readings_stream, settings.names.writer_consumer
            )
        finally:
            await nc.close()
        return int(info.num_redelivered or 0)

    return asyncio.run(check())


def original(code: str, ts: datetime, power_w: float) -> tuple[str, str]:
    body = {"deviceCode": code, "timestamp": ts.isoformat(), "electric": power_w}
    return "power/measurement", json.dumps(body)


def test_a_mac_spelled_two_ways_is_one_device_and_200_others_are_stored_in_the_same_pass(
    settings: Settings, broker: FleetBroker, tmp_path: Path
) -> None:
    with default_collation_database() as url:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert "_ci" in conn.execute(text("SELECT @@collation_database")).scalar_one()
            migrate(url)
            assert code_collation(engine) == "utf8mb4_bin"

            ours = settings.model_copy(update={"database_url": SecretStr(url)})
            env = service_env(ours)
            ingest = Service("ingest", env, tmp_path).start()
            writer = Service("writer", env, tmp_path).start()
            try:
                ingest.wait_logged("mqtt_subscribed")
                writer.wait_logged("writer_starting")
                # Prototype devices on the shared topic: enrolled as legacy.
                admit(engine, MAC, *(f"dev-{i}" for i in range(200)))
                t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
                publish_all(broker.fleet_url, [original(MAC, t0, 10.0)])
                wait_for(lambda: device_rows(engine, MAC) == 1, 30, what="the first MAC reading")

                others = [
                    original(f"dev-{i}", t0 + timedelta(seconds=1), float(i)) for i in range(200)
                ]
                publish_all(
                    broker.fleet_url,
                    [original(MAC_LOWER, t0 + timedelta(seconds=5), 20.0), *others],
                )
                wait_for(lambda: count_rows(engine) == 202, 60, what="all 202 readings")

                # As an older ingest would publish it: not canonical, in one batch with 200 more.
                t1 = t0 + timedelta(seconds=10)
                publish_batches(
                    ours,
                    [
                        [
                            Reading(device_code=MAC_DASHED, ts=t1, power_w=30.0),
                            *(
                                Reading(device_code=f"dev-{i}", ts=t1, power_w=1.0)
                                for i in range(200)
                            ),
                        ]
                    ],
                )
                wait_for(lambda: count_rows(engine) == 403, 60, what="all 403 readings")
                assert device_rows(engine, MAC) == 3
                assert [c for c in device_codes(engine) if not c.startswith("dev-")] == [MAC]
                assert consumer_idle(
                    ours.nats_url, ours.names.readings_stream, ours.names.writer_consumer
                )
                # Stored in the first pass: nothing redelivered, split or dead-lettered.
                assert redelivered(ours) == 0
                assert read_rejections(ours.nats_url, ours.names.rejected_stream, 0, 0) == []
                assert "batch_failed_splitting" not in writer.log_text()
            finally:
                writer.stop()
                ingest.stop()
        finally:
            engine.dispose()


def test_the_migration_makes_existing_codes_exact_and_macs_canonical() -> None:
    with default_collation_database() as url:
        migrate(url, "0002")
        engine = make_engine(url)
        try:
            assert code_collation(engine).endswith("_ci")
            now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            with engine.begin() as conn:
                for code in (MAC_DASHED, "Kitchen", "1001"):
                    conn.execute(
                        text(
                            "INSERT INTO devices (code, payload_format, meter_role, bidirectional,"
                            " first_seen_at, last_seen_at) VALUES (:c, 'original', 'standalone',"
                            " 0, :t, :t)"
                        ),
                        {"c": code, "t": now},
                    )
            migrate(url)
            assert code_collation(engine) == "utf8mb4_bin"
            assert device_codes(engine) == ["1001", MAC, "Kitchen"]
            # Exact from now on: another case is another device.
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO devices (code, payload_format, meter_role, bidirectional,"
                        " first_seen_at, last_seen_at) VALUES ('kitchen', 'original',"
                        " 'standalone', 0, :t, :t)"
                    ),
                    {"t": now},
                )
            assert len(device_codes(engine)) == 4
        finally:
            engine.dispose()


def test_two_stored_spellings_of_one_mac_stop_the_migration_before_it_changes_anything() -> None:
    with default_collation_database() as url:
        migrate(url, "0002")
        engine = make_engine(url)
        try:
            now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            with engine.begin() as conn:
                for code in (MAC_DASHED, MAC):
                    conn.execute(
                        text(
                            "INSERT INTO devices (code, payload_format, meter_role, bidirectional,"
                            " first_seen_at, last_seen_at) VALUES (:c, 'original', 'standalone',"
                            " 0, :t, :t)"
                        ),
                        {"c": code, "t": now},
                    )
            with pytest.raises(RuntimeError) as caught:
                migrate(url)
            message = str(caught.value)
            assert MAC_DASHED in message and MAC in message and "powerflow migrate" in message
            assert sorted(device_codes(engine)) == sorted([MAC_DASHED, MAC])
            assert code_collation(engine).endswith("_ci")
            with engine.connect() as conn:
                assert (
                    conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                    == "0002"
                )
        finally:
            engine.dispose()


def test_before_the_migration_a_code_the_database_calls_equal_never_fails_the_batch() -> None:
    with default_collation_database() as url:
        migrate(url)
        engine = make_engine(url)
        try:
            # devices.code still case-insensitive, as before migration 0003 (a writer of this
            # version needs the later columns, so the collation is put back by hand).
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "ALTER TABLE devices MODIFY code VARCHAR(64)"
                        " COLLATE utf8mb4_general_ci NOT NULL"
                    )
                )
            assert code_collation(engine) == "utf8mb4_general_ci"
            t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
            store_readings(
                engine,
                [Reading(device_code="Kitchen", ts=t0, power_w=1.0)],
                received_at=t0,
                max_gap=timedelta(seconds=60),
            )
            with capture_logs() as logs:
                result = store_readings(
                    engine,
                    [
                        Reading(device_code="kitchen", ts=t0 + timedelta(seconds=5), power_w=2.0),
                        Reading(device_code="dev-1", ts=t0, power_w=3.0),
                    ],
                    received_at=t0,
                    max_gap=timedelta(seconds=60),
                )
            assert result.inserted == 2 and not result.refused
            assert device_codes(engine) == ["dev-1", "Kitchen"]
            assert device_rows(engine, "Kitchen") == 2
            [mismatch] = [e for e in logs if e["event"] == "device_code_collation_mismatch"]
            assert (mismatch["code"], mismatch["stored_as"]) == ("kitchen", "Kitchen")
        finally:
            engine.dispose()


def test_a_second_different_value_keeps_the_first_and_is_counted_and_logged_with_both(
    engine: Engine,
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    gap = timedelta(seconds=60)
    first = [
        Reading(device_code="dev-c", ts=t0 + timedelta(seconds=i), power_w=100.0) for i in range(30)
    ]
    store_readings(engine, first, received_at=t0, max_gap=gap)
    second = [
        Reading(device_code="dev-c", ts=t0 + timedelta(seconds=i), power_w=150.0, energy_wh=7.0)
        for i in range(30)
    ]
    result = store_readings(engine, second, received_at=t0, max_gap=gap)
    assert (result.inserted, result.duplicates, result.conflicts) == (0, 30, 30)
    assert len(result.conflict_log.samples) == 20 and result.conflict_log.unlogged == 10
    sample = result.conflict_log.samples[0]
    assert (sample.device_code, sample.column, sample.stored, sample.incoming) == (
        "dev-c",
        "power_w",
        100.0,
        150.0,
    )
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT DISTINCT power_w, energy_wh FROM readings")).all()
    # The first value stays; the column that was empty is filled.
    assert [tuple(r) for r in rows] == [(100.0, 7.0)]


def test_the_running_writer_logs_a_conflict_with_both_values(
    services: dict[str, Service], engine: Engine, settings: Settings
) -> None:
    writer = services["writer"].start()
    writer.wait_logged("writer_starting")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    publish_batches(settings, [[Reading(device_code="dev-x", ts=t0, power_w=100.0)]])
    wait_for(lambda: count_rows(engine) == 1, 30, what="the first value")
    publish_batches(settings, [[Reading(device_code="dev-x", ts=t0, power_w=150.0)]])
    writer.wait_logged("reading_conflict")
    [event] = [
        json.loads(line) for line in writer.log_text().splitlines() if '"reading_conflict"' in line
    ]
    assert (event["device_code"], event["column"], event["stored"], event["incoming"]) == (
        "dev-x",
        "power_w",
        100.0,
        150.0,
    )
    assert event["ts"] == t0.isoformat()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT power_w FROM readings")).scalar_one() == 100.0


def poison_site(engine: Engine, code: str) -> None:
    """A device on a site whose timezone no longer exists: its local-clock readings fail."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sites (id, name, timezone, region, created_at)"
                " VALUES (77, 'lost', 'Nowhere/Atlantis', 'KR', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO devices (code, site_id, payload_format, meter_role, bidirectional,"
                " first_seen_at, last_seen_at) VALUES (:c, 77, 'tasmota', 'standalone', 0, :t, :t)"
            ),
            {"c": code, "t": now},
        )


def test_one_poison_message_in_a_batch_of_50_is_split_out_and_the_49_stored_in_the_same_pass(
    settings: Settings, engine: Engine
) -> None:
    poison_site(engine, "tasmota-lost")
    local_now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    batches = [[Reading(device_code=f"dev-{i}", ts=t0, power_w=float(i))] for i in range(49)]
    batches.insert(
        17, [Reading(device_code="tasmota-lost", ts=local_now, power_w=5.0, local_time=True)]
    )
    publish_batches(settings, batches)

    async def one_pass() -> tuple[int, int]:
        nc = await connect_nats(settings, name="pf-test-writer")
        js = nc.jetstream()
        await ensure_writer_consumer(js, settings)
        names = settings.names
        sub = await js.pull_subscribe_bind(names.writer_consumer, stream=names.readings_stream)
        messages: list[Msg] = []
        while len(messages) < 50:
            messages += await sub.fetch(50 - len(messages), timeout=5)
        fetched = [(m, batch_decoder.decode(m.data).readings) for m in messages]
        writer = Writer(nc=nc, js=js, engine=engine, settings=settings)
        await writer._process(fetched)  # one pass, exactly this batch
        await nc.flush()
        # Acks are settled by the server after they arrive: wait for the count to settle.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            info = await js.consumer_info(names.readings_stream, names.writer_consumer)
            if info.num_ack_pending <= 1 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        persisted = await js.stream_info(names.persisted_stream)
        await nc.close()
        return int(info.num_ack_pending), int(persisted.state.messages)

    with capture_logs() as logs:
        pending, persisted = asyncio.run(one_pass())
    assert count_rows(engine) == 49
    assert pending == 1  # only the poison, nak'ed to come back alone
    events = [e["event"] for e in logs]
    assert events.count("message_failed") == 1
    # 50 messages halve down to the one: a split at every level, log2(50) rounded up.
    assert events.count("batch_failed_splitting") == 6
    assert persisted >= 1
    assert read_rejections(settings.nats_url, settings.names.rejected_stream, 0, 0) == []


@pytest.mark.parametrize("hang_at", ["last_delivery", "after_dead_letter"])
def test_a_message_that_always_fails_is_dead_lettered_once_even_if_killed_at_its_last_delivery(
    settings: Settings, engine: Engine, tmp_path: Path, hang_at: str
) -> None:
    # The "moment" is made exact by a test-only hook: the writer hangs there (and says so),
    # and the test kills it with SIGKILL. A kill on a timer would land anywhere.
    poison_site(engine, "tasmota-lost")
    local_now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    good = [[Reading(device_code=f"dev-{i}", ts=t0, power_w=float(i))] for i in range(5)]
    poison = [Reading(device_code="tasmota-lost", ts=local_now, power_w=5.0, local_time=True)]
    bodies = publish_batches(settings, [good[0], good[1], poison, *good[2:]])

    env = service_env(settings, POWERFLOW_WRITER_MAX_DELIVER="2")
    first = Service("writer", {**env, TEST_HANG_ENV: hang_at}, tmp_path).start()
    try:
        first.wait_logged("test_hang", timeout_s=60)
        # Its neighbours were stored in the first pass, before the poison came back.
        assert count_rows(engine) == 5
        assert "message_failed" in first.log_text()
        first.kill9()
    finally:
        first.stop()
    (tmp_path / "again").mkdir()
    second = Service("writer", env, tmp_path / "again").start()
    try:
        names = settings.names
        wait_for(
            lambda: consumer_idle(settings.nats_url, names.readings_stream, names.writer_consumer),
            60,
            what="the poison to be dead-lettered and terminated",
        )
        [record] = read_rejections(settings.nats_url, names.rejected_stream, 1, 10)
        assert record.reason == MAX_DELIVER_EXCEEDED
        assert record.stage == "writer"
        assert record.payload == bodies[2]
        if hang_at == "after_dead_letter":
            assert "Nowhere/Atlantis" in record.detail
        assert count_rows(engine) == 5
        assert "dead_lettered" in second.log_text()  # sent again, dropped as a duplicate
    finally:
        second.stop()


def test_the_aggregator_dead_letters_a_bucket_that_always_fails_once_and_computes_the_others(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    stored = store_readings(
        engine,
        [
            Reading(device_code="dev-a", ts=t0 + timedelta(minutes=m), power_w=60.0)
            for m in (10, 11)
        ],
        received_at=t0,
        max_gap=timedelta(seconds=90),
    )
    device_id = stored.buckets[0].device_id
    # An hour at the end of the calendar: its recompute overflows, every time.
    poison = Persisted(
        buckets=[Bucket(device_id, datetime(9999, 12, 31, 23, tzinfo=UTC))],
        rows=1,
        committed_at=t0,
    )
    good = Persisted(buckets=stored.buckets, rows=2, committed_at=t0)
    bodies = [json_encoder.encode(p) for p in (poison, good)]

    async def publish() -> None:
        nc = await connect_nats(settings, name="pf-test")
        js = nc.jetstream()
        await ensure_streams(js, settings)
        for body in bodies:
            await js.publish(settings.names.persisted_subject, body)
        await nc.close()

    asyncio.run(publish())
    env = service_env(settings, POWERFLOW_AGGREGATOR_MAX_DELIVER="2")
    aggregator = Service("aggregator", env, tmp_path).start()
    try:
        aggregator.wait_logged("aggregator_starting")
        names = settings.names
        wait_for(
            lambda: consumer_idle(
                settings.nats_url, names.persisted_stream, names.aggregator_consumer
            ),
            60,
            what="the poison bucket to be dead-lettered and terminated",
        )
        [record] = read_rejections(settings.nats_url, names.rejected_stream, 1, 10)
        assert (record.reason, record.stage) == (MAX_DELIVER_EXCEEDED, "aggregator")
        assert record.payload == bodies[0]
        assert "OverflowError" in record.detail
        assert count_rows(engine, "hourly_stats") >= 1
    finally:
        aggregator.stop()
