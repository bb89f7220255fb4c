"""Operator corrections against the real MariaDB and NATS: the row, the audit, the recompute."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from pf_testing import NatsServer, delete_namespace_streams
from powerflow_common.corrections import (
    CorrectionRequest,
    apply_correction,
    correct,
    list_corrections,
    republish_stale,
)
from powerflow_common.db.models import DEVICES, READING_CORRECTIONS, READINGS
from powerflow_common.errors import CorrectionRefused, CorrectionTargetMissing
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.settings import Settings, load_settings
from powerflow_common.validation import limits_from_settings
from powerflow_common.wire import Bucket, Persisted, Reading, persisted_decoder
from powerflow_writer.store import store_readings

H = datetime(2026, 11, 29, 7, tzinfo=UTC)
TS = H + timedelta(minutes=59, seconds=30)  # 30 s before 08:00: touches hours 07 and 08
MAX_GAP = timedelta(seconds=60)


@pytest.fixture
def corr_settings(database_url: str, nats_url: str, namespace: str) -> Iterator[Settings]:
    values = load_settings(
        database_url=database_url,
        nats_url=nats_url,
        namespace=namespace,
        nats_timeout_s=1.0,
        correction_announce_deadline_s=2.0,
    )
    yield values
    delete_namespace_streams(values)


def add_reading(engine: Engine, code: str = "fix-1", **values: float) -> int:
    with engine.begin() as conn:
        device_id = int(
            conn.execute(
                insert(DEVICES).values(
                    code=code,
                    payload_format="original",
                    meter_role="standalone",
                    bidirectional=False,
                    first_seen_at=TS,
                    admitted_at=TS,
                    last_seen_at=TS,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        conn.execute(insert(READINGS).values(device_id=device_id, ts=TS, received_at=TS, **values))
    return device_id


def stored(engine: Engine, device_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(READINGS).where(READINGS.c.device_id == device_id, READINGS.c.ts == TS)
        ).one()


def audit_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(READING_CORRECTIONS).order_by(READING_CORRECTIONS.c.id)))


def request(by: str = "alice", **values: float | None) -> CorrectionRequest:
    return CorrectionRequest(
        device_code="fix-1", ts=TS, values=values, reason="meter misread", corrected_by=by
    )


async def persisted_messages(settings: Settings) -> list[Persisted]:
    nc = await connect_nats(settings, "test-reader")
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.names.persisted_stream)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            got = await js.get_msg(settings.names.persisted_stream, seq)
            messages.append(persisted_decoder.decode(got.data or b""))
        return messages
    finally:
        await close_nats(nc)


async def run_correction(settings: Settings, engine: Engine, req: CorrectionRequest) -> Any:
    nc = await connect_nats(settings, "test-corrector")
    try:
        js = nc.jetstream(timeout=settings.nats_timeout_s)
        await ensure_streams(js, settings)
        return await correct(engine, js, settings, req)
    finally:
        await close_nats(nc)


def test_a_correction_changes_the_value_keeps_who_when_and_the_old_one_and_recomputes_both_hours(
    engine: Engine, corr_settings: Settings
) -> None:
    device_id = add_reading(engine, power_w=1000.0, energy_wh=500.0)
    outcome = asyncio.run(run_correction(corr_settings, engine, request(power_w=1600.0)))

    assert outcome.totals_republished and outcome.error == ""
    assert stored(engine, device_id).power_w == 1600.0
    assert stored(engine, device_id).energy_wh == 500.0  # untouched column
    [audit] = audit_rows(engine)
    assert (audit.column_name, audit.old_value, audit.new_value) == ("power_w", 1000.0, 1600.0)
    assert (audit.corrected_by, audit.reason) == ("alice", "meter misread")
    assert audit.totals_republished_at is not None and audit.ts == TS
    [message] = asyncio.run(persisted_messages(corr_settings))
    assert message.buckets == [Bucket(device_id, H), Bucket(device_id, H + timedelta(hours=1))]

    # The same request again: nothing changes, nothing is announced twice.
    again = asyncio.run(run_correction(corr_settings, engine, request(power_w=1600.0)))
    assert again.applied.changed == [] and again.applied.unchanged == ["power_w"]
    assert len(audit_rows(engine)) == 1
    assert len(asyncio.run(persisted_messages(corr_settings))) == 1
    [listed] = list_corrections(engine, "fix-1")
    assert (listed.id, listed.old_value, listed.new_value) == (audit.id, 1000.0, 1600.0)


def test_a_refused_correction_changes_nothing_and_says_what_is_wrong(
    engine: Engine, corr_settings: Settings
) -> None:
    device_id = add_reading(engine, power_w=1000.0)
    limits = limits_from_settings(corr_settings)
    cases: list[tuple[CorrectionRequest, str]] = [
        (request(power_w=-1.0), "out_of_range"),
        (request(power_w=None), "null_value"),
        (request(seq=3.0), "column_not_correctable"),
        (request(by=" ", power_w=1.0), "corrected_by_missing"),
        (
            CorrectionRequest(
                device_code="fix-1", ts=TS, values={"power_w": 1.0}, reason="", corrected_by="a"
            ),
            "reason_missing",
        ),
    ]
    for req, reason in cases:
        with pytest.raises(CorrectionRefused) as refused:
            apply_correction(engine, req, limits=limits, max_gap=MAX_GAP)
        assert refused.value.reason == reason
        assert not isinstance(refused.value, CorrectionTargetMissing)
    missing = [
        (CorrectionRequest("nope", TS, {"power_w": 1.0}, "r", "a"), "unknown_device"),
        (
            CorrectionRequest("fix-1", TS + timedelta(seconds=1), {"power_w": 1.0}, "r", "a"),
            "unknown_reading",
        ),
    ]
    for req, reason in missing:
        with pytest.raises(CorrectionTargetMissing) as absent:
            apply_correction(engine, req, limits=limits, max_gap=MAX_GAP)
        assert absent.value.reason == reason
    assert stored(engine, device_id).power_w == 1000.0
    assert audit_rows(engine) == []


def test_two_corrections_at_once_each_record_the_value_they_replaced(
    engine: Engine, corr_settings: Settings
) -> None:
    add_reading(engine, power_w=1000.0)
    limits = limits_from_settings(corr_settings)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(value: float) -> None:
        start.wait()
        try:
            apply_correction(engine, request(power_w=value), limits=limits, max_gap=MAX_GAP)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in (1100.0, 1200.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    first, second = audit_rows(engine)
    # The row lock serialises them: the second replaced what the first wrote.
    assert first.old_value == 1000.0 and second.old_value == first.new_value
    assert {first.new_value, second.new_value} == {1100.0, 1200.0}
    device_id = first.device_id
    assert stored(engine, device_id).power_w == second.new_value


def test_a_replayed_original_reading_after_a_correction_keeps_the_corrected_value(
    engine: Engine, corr_settings: Settings
) -> None:
    device_id = add_reading(engine, power_w=1000.0)
    apply_correction(
        engine, request(power_w=1600.0), limits=limits_from_settings(corr_settings), max_gap=MAX_GAP
    )
    replay = Reading(device_code="fix-1", ts=TS, power_w=1000.0, temperature_c=21.5)
    result = store_readings(engine, [replay], received_at=datetime.now(UTC), max_gap=MAX_GAP)
    assert result.conflicts == 1
    row = stored(engine, device_id)
    assert row.power_w == 1600.0 and row.temperature_c == 21.5  # empty columns still fill


def test_with_nats_down_the_correction_is_committed_its_totals_reported_stale_then_republished(
    engine: Engine, corr_settings: Settings, tmp_path: Path
) -> None:
    device_id = add_reading(engine, power_w=1000.0)
    server = NatsServer(tmp_path / "nats").start()
    settings = load_settings(**{**dict(corr_settings), "nats_url": server.url})

    async def scenario() -> tuple[Any, Any, list[Persisted]]:
        nc = await connect_nats(settings, "test-corrector")
        js = nc.jetstream(timeout=settings.nats_timeout_s)
        await ensure_streams(js, settings)
        server.stop()
        outcome = await correct(engine, js, settings, request(power_w=1600.0))
        stale_rows = audit_rows(engine)
        server.start()
        # nats-py reconnects by itself; a patient announcement waits out the reconnection.
        patient = load_settings(**{**dict(settings), "correction_announce_deadline_s": 30.0})
        result = await republish_stale(engine, js, patient)
        info = await js.stream_info(settings.names.persisted_stream)
        messages = [
            persisted_decoder.decode((await js.get_msg(info.config.name or "", seq)).data or b"")
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
        await close_nats(nc)
        return outcome, (stale_rows, result), messages

    try:
        outcome, (stale_rows, result), messages = asyncio.run(
            asyncio.wait_for(scenario(), timeout=60)
        )
    finally:
        server.stop()
    assert not outcome.totals_republished and outcome.error
    assert stored(engine, device_id).power_w == 1600.0  # committed whatever NATS did
    assert [r.totals_republished_at for r in stale_rows] == [None]
    assert (result.corrections, result.buckets, result.failed) == (1, 2, "")
    assert [m.buckets for m in messages] == [
        [Bucket(device_id, H), Bucket(device_id, H + timedelta(hours=1))]
    ]
    assert all(r.totals_republished_at is not None for r in audit_rows(engine))


# --- the command line ----------------------------------------------------------------------


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "POWERFLOW_DATABASE_URL": settings.database_url.get_secret_value(),
        "POWERFLOW_NATS_URL": settings.nats_url,
        "POWERFLOW_NAMESPACE": settings.namespace,
        "POWERFLOW_NATS_TIMEOUT_S": "1.0",
        "POWERFLOW_CORRECTION_ANNOUNCE_DEADLINE_S": "1.5",
        "POWERFLOW_LOG_LEVEL": "error",
        **extra,
    }


def test_the_cli_corrects_lists_and_finishes_stale_totals_when_nats_is_back(
    engine: Engine, corr_settings: Settings
) -> None:
    from typer.testing import CliRunner

    from powerflow.broker import free_port
    from powerflow.cli import app

    device_id = add_reading(engine, power_w=1000.0)
    runner = CliRunner()
    ts = TS.isoformat()
    asyncio.run(ensure_namespace_streams(corr_settings))

    done = runner.invoke(
        app,
        ["correct", "fix-1", ts, "--set", "power_w=1600", "--reason", "misread", "--by", "bob"],
        env=cli_env(corr_settings),
    )
    assert done.exit_code == 0, done.output
    assert "1000.0 -> 1600.0" in done.output
    refused = runner.invoke(
        app,
        ["correct", "fix-1", ts, "--set", "seq=1", "--reason", "r", "--by", "bob"],
        env=cli_env(corr_settings),
    )
    assert refused.exit_code == 1 and "column_not_correctable" in refused.output

    nowhere = f"nats://127.0.0.1:{free_port()}"
    stale = runner.invoke(
        app,
        ["correct", "fix-1", ts, "--set", "power_w=1700", "--reason", "again", "--by", "bob"],
        env=cli_env(corr_settings, POWERFLOW_NATS_URL=nowhere),
    )
    assert stale.exit_code == 3, stale.output
    assert "totals are stale" in stale.output and "--republish-stale" in stale.output
    assert stored(engine, device_id).power_w == 1700.0

    listed = runner.invoke(app, ["corrections", "fix-1"], env=cli_env(corr_settings))
    assert listed.exit_code == 0 and "stale" in listed.output and "misread" in listed.output
    fixed = runner.invoke(app, ["corrections", "--republish-stale"], env=cli_env(corr_settings))
    assert fixed.exit_code == 0, fixed.output
    assert "1 correction(s): 2 device-hour(s)" in fixed.output
    assert all(r.totals_republished_at is not None for r in audit_rows(engine))
    assert [r.new_value for r in audit_rows(engine)] == [1600.0, 1700.0]
    assert [r.corrected_by for r in audit_rows(engine)] == ["bob", "bob"]


async def ensure_namespace_streams(settings: Settings) -> None:
    nc = await connect_nats(settings, "test-streams")
    try:
        await ensure_streams(nc.jetstream(), settings)
    finally:
        await close_nats(nc)


def test_stale_corrections_are_republished_in_bounded_messages(
    engine: Engine, corr_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import powerflow_common.corrections as corrections

    device_id = add_reading(engine, power_w=1000.0, temperature_c=20.0)
    for req in (request(power_w=1100.0), request(temperature_c=21.0)):
        outcome = asyncio.run(correct(engine, None, corr_settings, req))
        assert not outcome.totals_republished and outcome.error == "no connection to NATS"
    monkeypatch.setattr(corrections, "STALE_PER_MESSAGE", 1)

    async def republish() -> Any:
        nc = await connect_nats(corr_settings, "test-republisher")
        try:
            js = nc.jetstream(timeout=corr_settings.nats_timeout_s)
            await ensure_streams(js, corr_settings)
            return await republish_stale(engine, js, corr_settings, device_code="fix-1")
        finally:
            await close_nats(nc)

    result = asyncio.run(republish())
    assert (result.corrections, result.buckets, result.failed) == (2, 4, "")
    messages = asyncio.run(persisted_messages(corr_settings))
    assert len(messages) == 2
    assert all(m.buckets[0] == Bucket(device_id, H) for m in messages)
    assert asyncio.run(republish()).corrections == 0  # nothing stale is left
