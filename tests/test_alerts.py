"""Alerts against real services: NATS JetStream (the embedded server), the database (SQLite,
and MariaDB for the modules' ``both_backends``), a webhook receiver over HTTP on loopback and
an SMTP server (aiosmtpd) on loopback.

Each rule kind is raised once and cleared; an alert stays one alert across a worker restart
and with two worker copies running; a webhook receiver that fails twice gets the event a third
time with the same id and a valid signature; an e-mail reaches the SMTP server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiosmtpd.controller import Controller
from pf_api_data import add_device, add_site
from pf_rollup import store
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import Engine, insert, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import service_env
from pf_testing import Service, delete_namespace_streams, read_rejections, wait_for
from powerflow.broker import free_port
from powerflow_aggregator.service import run_aggregator
from powerflow_alerts.delivery import Sender, deliver_due
from powerflow_alerts.history import latest_complete_day, latest_complete_night
from powerflow_alerts.worker import AlertsWorker, ensure_alerts_consumer
from powerflow_common.alert_rules import SilenceParams, night_bounds_utc
from powerflow_common.alerts_store import OutboxEvent, RuleRow, clear_alert, raise_alert
from powerflow_common.db.engine import make_engine
from powerflow_common.db.models import ALERT_EVENTS, ALERT_RULES, ALERTS, DEVICES, HOURLY_STATS
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.logs import configure_logging, register_secrets
from powerflow_common.periods import period_bounds_utc
from powerflow_common.settings import Settings
from powerflow_common.wire import (
    Bucket,
    Persisted,
    Reading,
    ReadingBatch,
    RolledUp,
    json_encoder,
    rolled_up_decoder,
)

pytestmark = pytest.mark.both_backends

SECRET = "whsec_" + base64.b64encode(b"powerflow-test-webhook-secret-32b").decode()
TZ = "Asia/Seoul"  # devices without a site use the organisation's timezone (organisation_timezone)


# --- a webhook receiver and an SMTP server on loopback ---------------------------------------


@dataclass
class Receiver:
    """An HTTP server that answers 500 to the first ``failures`` requests, then 204."""

    failures: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0


@contextlib.contextmanager
def webhook_receiver(failures: int) -> Iterator[Receiver]:
    receiver = Receiver(failures=failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            failed = len(receiver.requests) <= receiver.failures
            self.send_response(500 if failed else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


# --- the worker, run in this test's event loop ---------------------------------------------


def alert_settings(database_url: str, nats_url: str, namespace: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "namespace": namespace,
        "alerts_silence_check_s": 0.1,
        "alerts_rules_refresh_s": 0.5,
        "alerts_outbox_poll_s": 0.1,
        "alerts_rollup_grace_s": 0,
        "alerts_delivery_backoff_base_s": 0.05,
        "alerts_delivery_backoff_cap_s": 0.2,
        "alerts_metrics_port": 0,
    }
    return Settings(_env_file=None, **(values | extra))


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[AlertsWorker]:
    """One worker copy with its own NATS connection, until the block ends (a clean stop)."""
    nc = await connect_nats(settings, "test-alerts")
    js = nc.jetstream()
    engine = make_engine(settings.database_url.get_secret_value())
    await ensure_streams(js, settings)
    await ensure_alerts_consumer(js, settings)
    worker = AlertsWorker(nc=nc, js=js, engine=engine, settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), 20)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await close_nats(nc)
        engine.dispose()


async def eventually(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    """Wait for ``condition()`` to be truthy, with a deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(condition)
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}: {last!r}")


async def publish_live(settings: Settings, readings: list[Reading]) -> None:
    """Publish a batch as ingest does (the worker reads the subject, as the live view does)."""
    nc = await connect_nats(settings, "test-live")
    body = json_encoder.encode(ReadingBatch(readings=readings, ingested_at=datetime.now(UTC)))
    await nc.publish(settings.names.readings_subject("0"), body)
    await close_nats(nc)


def live_batches_judged() -> float:
    """Live batches judged by every worker copy of this process (the metric)."""
    return REGISTRY.get_sample_value("powerflow_alerts_live_batches_judged_total") or 0.0


async def publish_rolled_up(settings: Settings, buckets: list[Bucket]) -> None:
    nc = await connect_nats(settings, "test-rollups")
    js = nc.jetstream()
    body = json_encoder.encode(RolledUp(buckets=buckets, rolled_up_at=datetime.now(UTC)))
    await js.publish(settings.names.rollups_subject, body)
    await close_nats(nc)


@pytest.fixture
def settings(
    engine: Engine, database_url: str, nats_url: str, namespace: str
) -> Iterator[Settings]:
    """A worker's settings with a webhook receiver that accepts everything (tests that need
    another receiver replace it with ``with_receiver``)."""
    with webhook_receiver(failures=0) as receiver:
        value = alert_settings(
            database_url,
            nats_url,
            namespace,
            alerts_webhook_url=f"http://127.0.0.1:{receiver.port}/hooks/powerflow",
            alerts_webhook_secret=SECRET,
        )
        yield value
    delete_namespace_streams(value)


def with_receiver(settings: Settings, receiver: Receiver) -> Settings:
    url = SecretStr(f"http://127.0.0.1:{receiver.port}/hooks/powerflow")
    return settings.model_copy(update={"alerts_webhook_url": url})


# --- data helpers -----------------------------------------------------------------------------


def device(engine: Engine, code: str, *, last_seen: datetime) -> int:
    store(engine, [Reading(device_code=code, ts=last_seen, power_w=10.0)])
    with engine.connect() as conn:
        return int(conn.execute(select(DEVICES.c.id).where(DEVICES.c.code == code)).scalar_one())


def rule(engine: Engine, kind: str, params: dict[str, Any], *, device_id: int) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        key = conn.execute(
            insert(ALERT_RULES).values(
                name=f"{kind} test",
                kind=kind,
                scope="device",
                device_id=device_id,
                params=params,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def alerts(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(ALERTS).order_by(ALERTS.c.id)))


def events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(ALERT_EVENTS).order_by(ALERT_EVENTS.c.id)))


def cleared(engine: Engine) -> bool:
    rows = alerts(engine)
    return bool(rows) and all(r.cleared_at is not None for r in rows)


def power(code: str, start: datetime, seconds: int, watts: float) -> list[Reading]:
    return [
        Reading(device_code=code, ts=start + timedelta(seconds=s), power_w=watts)
        for s in range(0, seconds + 1, 5)
    ]


def hour_rows(device_id: int, hours: list[datetime], watts: float) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "device_id": device_id,
            "hour_start": h,
            "samples": 720,
            "coverage": 1.0,
            "energy_kwh": watts / 1000,
            "power_avg_w": watts,
            "computed_at": now,
        }
        for h in hours
    ]


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    out, at = [], start
    while at < end:
        out.append(at)
        at += timedelta(hours=1)
    return out


# --- the rules, each raised once and cleared -------------------------------------------------


async def test_power_above_is_raised_once_with_evidence_and_cleared_by_a_reading_below(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-P1", last_seen=now - timedelta(minutes=5))
    rule(engine, "power_above", {"threshold_w": 1000, "minutes": 1}, device_id=dev)
    async with running(settings):
        await publish_live(settings, power("ALERT-P1", now - timedelta(seconds=90), 90, 1500.0))
        [raised] = await eventually(lambda: alerts(engine), what="the alert")
        assert raised.kind == "power_above" and raised.subject == f"device:{dev}"
        assert raised.evidence["extreme_w"] == 1500.0 and raised.evidence["lasted_s"] >= 60
        # More readings above: still one alert.
        await publish_live(settings, power("ALERT-P1", now, 10, 1600.0))
        await publish_live(
            settings,
            [Reading(device_code="ALERT-P1", ts=now + timedelta(seconds=15), power_w=400.0)],
        )
        await eventually(lambda: cleared(engine), what="the clear")
    [done] = alerts(engine)
    assert done.clear_evidence["direction"] == "above" and done.open_subject is None
    assert sorted(e.transition for e in events(engine)) == ["cleared", "raised"]


async def test_power_below_is_raised_once_and_cleared(engine: Engine, settings: Settings) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-P2", last_seen=now - timedelta(minutes=5))
    rule(engine, "power_below", {"threshold_w": 50, "minutes": 1}, device_id=dev)
    async with running(settings):
        await publish_live(settings, power("ALERT-P2", now - timedelta(seconds=70), 70, 5.0))
        await eventually(lambda: alerts(engine), what="the alert")
        await publish_live(settings, power("ALERT-P2", now + timedelta(seconds=5), 5, 80.0))
        await eventually(lambda: cleared(engine), what="the clear")
    assert len(alerts(engine)) == 1


async def test_silence_is_raised_by_the_timer_and_cleared_by_the_next_reading(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-S1", last_seen=now - timedelta(minutes=10))
    rule(engine, "silence", {"minutes": 5}, device_id=dev)
    async with running(settings) as worker:
        [raised] = await eventually(lambda: alerts(engine), what="the silence alert")
        assert raised.evidence["silent_s"] >= 600
        for _ in range(3):  # more timer ticks, the condition still true: still one alert
            await worker.tick()
        assert len(alerts(engine)) == 1
        await publish_live(settings, [Reading(device_code="ALERT-S1", ts=now, power_w=3.0)])
        await eventually(lambda: cleared(engine), what="the clear")


async def test_a_webhook_url_with_a_token_never_reaches_the_logs(
    engine: Engine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "tok_9f8e7d6c5b4a3f2e1d0c"
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    with webhook_receiver(failures=1) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/hooks/{token}?key={token}"
        tokened = Settings(_env_file=None, **(dict(settings) | {"alerts_webhook_url": url}))
        configure_logging("debug", "console", secrets=tokened.secret_values())
        try:
            dev = device(engine, "ALERT-W9", last_seen=datetime.now(UTC) - timedelta(minutes=10))
            rule(engine, "silence", {"minutes": 5}, device_id=dev)
            async with running(tokened):
                # A failed attempt, then the delivery: both would log the URL.
                await eventually(lambda: len(receiver.requests) >= 2, what="two deliveries")
                await eventually(
                    lambda: all(e.delivered_at for e in events(engine)), what="delivered"
                )
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            structlog.configure(**config)
            register_secrets([])
    out, err = capsys.readouterr()
    assert "alert_delivered" in out + err
    assert token not in out + err
    assert repr(tokened.alerts_webhook_url) == "SecretStr('**********')"


async def test_base_load_jump_is_judged_on_its_night_and_cleared_when_the_night_is_rolled_up_again(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-B1", last_seen=now)
    night = latest_complete_night(now, TZ)
    rows = []
    for n in range(28, 0, -1):
        start, end = night_bounds_utc(night - timedelta(days=n), TZ)
        rows += hour_rows(dev, hours_between(start, end), 100.0 + n % 3)
    start, end = night_bounds_utc(night, TZ)
    tonight = hours_between(start, end)
    rows += hour_rows(dev, tonight, 300.0)
    with engine.begin() as conn:
        conn.execute(insert(HOURLY_STATS), rows)
    rule(engine, "base_load_jump", {"k": 3, "min_change_pct": 10}, device_id=dev)
    async with running(settings):
        [raised] = await eventually(lambda: alerts(engine), what="the base-load alert")
        assert raised.evidence["value_w"] == 300.0 and raised.evidence["median_w"] == 101.0
        assert raised.evidence["night_of"] == night.isoformat()
        # The night recomputed (a corrected meter): rolled up again, judged again, cleared.
        with engine.begin() as conn:
            conn.execute(
                update(HOURLY_STATS)
                .where(HOURLY_STATS.c.device_id == dev, HOURLY_STATS.c.hour_start.in_(tonight))
                .values(power_avg_w=101.0)
            )
        await publish_rolled_up(settings, [Bucket(dev, h) for h in tonight])
        await eventually(lambda: cleared(engine), what="the clear")
    assert len(alerts(engine)) == 1


async def test_daily_kwh_above_is_judged_against_the_same_day_type_and_cleared(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-D1", last_seen=now)
    day = latest_complete_day(now, TZ)
    zone = ZoneInfo(TZ)

    def noon_hour(d: Any) -> datetime:
        start, _ = period_bounds_utc("day", datetime(d.year, d.month, d.day, 12, tzinfo=zone), TZ)
        return start + timedelta(hours=12)

    rows = []
    for n in range(28, 0, -1):
        rows += hour_rows(dev, [noon_hour(day - timedelta(days=n))], 10_000.0)  # 10 kWh
    rows += hour_rows(dev, [noon_hour(day)], 30_000.0)
    with engine.begin() as conn:
        conn.execute(insert(HOURLY_STATS), rows)
    rule(engine, "daily_kwh_above", {"k": 3, "min_change_pct": 20}, device_id=dev)
    async with running(settings):
        [raised] = await eventually(lambda: alerts(engine), what="the daily alert")
        assert raised.evidence["value_kwh"] == 30.0 and raised.evidence["median_kwh"] == 10.0
        assert raised.evidence["day"] == day.isoformat()
        with engine.begin() as conn:
            conn.execute(
                update(HOURLY_STATS)
                .where(
                    HOURLY_STATS.c.device_id == dev,
                    HOURLY_STATS.c.hour_start == noon_hour(day),
                )
                .values(energy_kwh=11.0)
            )
        await publish_rolled_up(settings, [Bucket(dev, noon_hour(day))])
        await eventually(lambda: cleared(engine), what="the clear")


async def test_a_rollups_bucket_without_utc_offset_is_dead_lettered_and_the_next_is_judged(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-N1", last_seen=now)
    day = latest_complete_day(now, TZ)
    start, _ = period_bounds_utc(
        "day", datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(TZ)), TZ
    )
    noon = start + timedelta(hours=12)
    rows = []
    for n in range(28, 0, -1):
        rows += hour_rows(dev, [noon - timedelta(days=n)], 10_000.0)
    rows += hour_rows(dev, [noon], 30_000.0)
    with engine.begin() as conn:
        conn.execute(insert(HOURLY_STATS), rows)
    rule(engine, "daily_kwh_above", {"k": 3, "min_change_pct": 20}, device_id=dev)
    async with running(settings) as worker:
        await eventually(lambda: alerts(engine), what="the daily alert")
        with engine.begin() as conn:
            conn.execute(
                update(HOURLY_STATS)
                .where(HOURLY_STATS.c.device_id == dev, HOURLY_STATS.c.hour_start == noon)
                .values(energy_kwh=11.0)
            )
        # An hour with no offset: it decodes, but cannot be compared with a period's bounds.
        naive = noon.replace(tzinfo=None).isoformat()
        nc = await connect_nats(settings, "test-rollups")
        body = f'{{"buckets":[[{dev},"{naive}"]],"rolled_up_at":"{now.isoformat()}"}}'
        await nc.jetstream().publish(settings.names.rollups_subject, body.encode())
        await close_nats(nc)
        await publish_rolled_up(settings, [Bucket(dev, noon)])
        await eventually(lambda: cleared(engine), what="the clear after the good message")
        assert worker.ready.is_set()
    [record] = await asyncio.to_thread(
        read_rejections, settings.nats_url, settings.names.rejected_stream, 1, 15
    )
    assert record.reason == "local_time_rolled_up" and record.stage == "alerts"
    assert naive.encode() in record.payload


async def test_a_task_that_dies_ends_run_with_its_error(engine: Engine, settings: Settings) -> None:
    nc = await connect_nats(settings, "test-alerts")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    await ensure_alerts_consumer(js, settings)
    worker = AlertsWorker(nc=nc, js=js, engine=engine, settings=settings)

    async def broken(sub: Any) -> list[Any]:
        raise OSError("pull broke")

    worker._pull = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="ended before the stop"):
            await asyncio.wait_for(worker.run(asyncio.Event()), 20)
        assert not worker.ready.is_set()
    finally:
        await close_nats(nc)


# --- once, across restarts and copies ---------------------------------------------------------


async def test_an_open_alert_stays_one_alert_across_a_restart_and_the_new_copy_clears_it(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-R1", last_seen=now - timedelta(minutes=5))
    rule(engine, "power_above", {"threshold_w": 1000, "minutes": 1}, device_id=dev)
    # The run is in the database (the writer stored it): a copy started now raises from it.
    store(engine, power("ALERT-R1", now - timedelta(seconds=80), 80, 2000.0))
    async with running(settings):
        await eventually(lambda: alerts(engine), what="the alert raised from stored readings")
    async with running(settings):  # a restart: memory gone, the run seeded again
        judged = live_batches_judged()
        await publish_live(settings, power("ALERT-R1", now + timedelta(seconds=5), 20, 2000.0))
        await eventually(lambda: live_batches_judged() > judged, what="the batch judged")
        assert len(alerts(engine)) == 1
        await publish_live(
            settings,
            [Reading(device_code="ALERT-R1", ts=now + timedelta(seconds=30), power_w=10.0)],
        )
        await eventually(lambda: cleared(engine), what="the clear by the restarted copy")
    assert [e.transition for e in events(engine)] == ["raised", "cleared"]


async def test_two_copies_raise_and_clear_once(engine: Engine, settings: Settings) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-C1", last_seen=now - timedelta(minutes=5))
    rule(engine, "power_above", {"threshold_w": 1000, "minutes": 1}, device_id=dev)
    silent = device(engine, "ALERT-C2", last_seen=now - timedelta(minutes=30))
    rule(engine, "silence", {"minutes": 5}, device_id=silent)
    async with running(settings) as one, running(settings) as two:
        judged = live_batches_judged()
        await publish_live(settings, power("ALERT-C1", now - timedelta(seconds=90), 90, 1500.0))
        await eventually(lambda: len(alerts(engine)) == 2, what="both alerts")
        # Both copies have judged the batch and the silence; the second copy raised nothing.
        await eventually(lambda: live_batches_judged() >= judged + 2, what="both copies judged")
        await one.tick()
        await two.tick()
        assert len(alerts(engine)) == 2
        await publish_live(
            settings,
            [
                Reading(device_code="ALERT-C1", ts=now + timedelta(seconds=5), power_w=10.0),
                Reading(device_code="ALERT-C2", ts=now + timedelta(seconds=5), power_w=10.0),
            ],
        )
        await eventually(lambda: cleared(engine), what="both clears")
        assert {one.ready.is_set(), two.ready.is_set()} == {True}
    transitions = sorted((e.alert_id, e.transition) for e in events(engine))
    assert len(transitions) == 4 and len(set(transitions)) == 4  # one raise, one clear each


# --- delivery ---------------------------------------------------------------------------------


async def test_a_webhook_failing_twice_gets_the_event_a_third_time_with_one_id_and_signature(
    engine: Engine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-W1", last_seen=now - timedelta(minutes=10))
    rule(engine, "silence", {"minutes": 5}, device_id=dev)
    with webhook_receiver(failures=2) as receiver:
        async with running(with_receiver(settings, receiver)):
            await eventually(
                lambda: [e for e in events(engine) if e.delivered_at is not None],
                what="the delivery",
            )
    assert len(receiver.requests) == 3
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    [alert] = alerts(engine)
    assert ids == {f"alert-{alert.id}-raised"}
    verifier = Webhook(SECRET)
    for headers, body in receiver.requests:
        payload = verifier.verify(body, headers)  # raises on a bad signature
        assert payload["event_id"] == f"alert-{alert.id}-raised"
        assert payload["alert"]["kind"] == "silence"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another-secret-entirely-32-bytes").decode()).verify(
            receiver.requests[0][1], receiver.requests[0][0]
        )
    [event] = events(engine)
    assert event.attempts == 3 and event.last_error is None
    logged = capsys.readouterr()
    assert logged.out.count("alert_delivery_failed") == 2  # said, with the status, no secret
    assert SECRET not in logged.out + logged.err
    assert SECRET.removeprefix("whsec_") not in logged.out + logged.err


async def test_an_event_written_before_a_restart_is_delivered_after_it(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-W2", last_seen=now - timedelta(minutes=10))
    rule(engine, "silence", {"minutes": 5}, device_id=dev)
    # The receiver is down while the first copy raises: the event stays in the outbox.
    down = settings.model_copy(update={"alerts_webhook_url": f"http://127.0.0.1:{free_port()}/"})
    async with running(down):
        await eventually(lambda: events(engine), what="the outbox row")
    [pending] = events(engine)
    assert pending.delivered_at is None
    with engine.begin() as conn:  # due now (the first copy backed off)
        conn.execute(update(ALERT_EVENTS).values(next_attempt_at=datetime.now(UTC)))
    with webhook_receiver(failures=0) as receiver:
        async with running(with_receiver(settings, receiver)):
            await eventually(lambda: receiver.requests, what="the delivery after the restart")
    assert json.loads(receiver.requests[0][1])["event_id"] == pending.event_id


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """aiosmtpd on loopback, collecting what it is sent."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def mail_settings(
    engine: Engine,
    database_url: str,
    nats_url: str,
    namespace: str,
    smtp_server: tuple[Mailbox, int],
) -> Iterator[Settings]:
    value = alert_settings(
        database_url,
        nats_url,
        namespace,
        alerts_smtp_host="127.0.0.1",
        alerts_smtp_port=smtp_server[1],
        alerts_smtp_tls="none",
        alerts_email_from="powerflow@example.test",
        alerts_email_to="ops@example.test,facility@example.test",
    )
    yield value
    delete_namespace_streams(value)


async def test_an_alert_is_mailed_to_the_smtp_server(
    engine: Engine, mail_settings: Settings, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox, _ = smtp_server
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-E1", last_seen=now - timedelta(minutes=10))
    rule(engine, "silence", {"minutes": 5}, device_id=dev)
    async with running(mail_settings):
        await eventually(lambda: mailbox.messages, what="the e-mail")
    [alert] = alerts(engine)
    mail = message_from_bytes(mailbox.messages[0])
    assert mail["X-Powerflow-Event-Id"] == f"alert-{alert.id}-raised"
    assert mail["To"] == "ops@example.test, facility@example.test"
    assert "silence" in mail["Subject"]
    assert [e.channel for e in events(engine)] == ["email"]


async def test_a_rule_name_with_a_newline_is_mailed_with_a_space_and_the_batch_goes_on(
    engine: Engine, mail_settings: Settings, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox, _ = smtp_server
    now = datetime.now(UTC)
    first = device(engine, "ALERT-E2", last_seen=now - timedelta(minutes=10))
    second = device(engine, "ALERT-E3", last_seen=now - timedelta(minutes=10))
    bad = rule(engine, "silence", {"minutes": 5}, device_id=first)
    rule(engine, "silence", {"minutes": 5}, device_id=second)
    # Written before the API refused control characters: the mail library refuses the header.
    with engine.begin() as conn:
        conn.execute(
            update(ALERT_RULES)
            .where(ALERT_RULES.c.id == bad)
            .values(name="Boiler\nBcc: evil@example.test")
        )
    async with running(mail_settings):
        await eventually(lambda: len(mailbox.messages) >= 2, what="both e-mails")
    subjects = sorted(str(message_from_bytes(m)["Subject"]) for m in mailbox.messages)
    assert subjects[0].startswith("[powerflow] Boiler Bcc: evil@example.test: raised")
    assert all(message_from_bytes(m)["Bcc"] is None for m in mailbox.messages)
    assert all(e.delivered_at is not None for e in events(engine))


# --- the aggregator's announcement -------------------------------------------------------------


async def test_the_aggregator_announces_on_rollups_the_hours_it_committed(
    engine: Engine, settings: Settings
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    buckets = store(engine, power("ALERT-A1", hour + timedelta(minutes=10), 600, 250.0))
    aggregator_settings = settings.model_copy(update={"retention_interval_s": 0})
    nc = await connect_nats(settings, "test-persisted")
    js = nc.jetstream()
    try:
        await ensure_streams(js, settings)
        persisted = Persisted(buckets=buckets, rows=121, committed_at=datetime.now(UTC))
        await js.publish(settings.names.persisted_subject, json_encoder.encode(persisted))
        stop = asyncio.Event()
        task = asyncio.create_task(run_aggregator(aggregator_settings, stop))
        stream = settings.names.rollups_stream

        async def announced() -> int:
            return int((await js.stream_info(stream)).state.messages)

        deadline = time.monotonic() + 20
        while await announced() == 0:
            assert time.monotonic() < deadline, "no ROLLUPS message"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 20)
        message = await js.get_msg(stream, 1)
    finally:
        await close_nats(nc)
    assert message.data is not None
    rolled = rolled_up_decoder.decode(message.data)
    assert rolled.buckets == sorted(buckets, key=lambda b: (b.device_id, b.hour_start))
    with engine.connect() as conn:
        assert conn.execute(select(HOURLY_STATS.c.energy_kwh)).all()  # committed before


async def test_site_rules_judge_the_site_totals_and_each_device_on_it(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    site = add_site(engine, "Plant", TZ)
    dev = add_device(
        engine, "ALERT-SITE-1", last_seen=now - timedelta(days=40), site_id=site, meter_role="main"
    )
    day = latest_complete_day(now, TZ)
    zone = ZoneInfo(TZ)

    def noon_hour(d: Any) -> datetime:
        return datetime(d.year, d.month, d.day, 12, tzinfo=zone).astimezone(UTC)

    rows = [hour_rows(dev, [noon_hour(day - timedelta(days=n))], 10_000.0)[0] for n in range(1, 29)]
    rows += hour_rows(dev, [noon_hour(day)], 2_000.0)
    with engine.begin() as conn:
        conn.execute(insert(HOURLY_STATS), rows)
        for kind, params in [
            ("daily_kwh_below", {"k": 3, "min_change_pct": 20}),
            ("silence", {"minutes": 60}),
        ]:
            conn.execute(
                insert(ALERT_RULES).values(
                    name=f"site {kind}",
                    kind=kind,
                    scope="site",
                    site_id=site,
                    params=params,
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
    async with running(settings):
        found = await eventually(lambda: len(alerts(engine)) == 2 and alerts(engine))
    by_kind = {a.kind: a for a in found}
    assert by_kind["daily_kwh_below"].subject == f"site:{site}"
    assert by_kind["daily_kwh_below"].evidence["value_kwh"] == 2.0
    assert by_kind["silence"].subject == f"device:{dev}"


async def test_a_rule_made_while_the_worker_runs_is_judged_on_the_stored_readings(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-N1", last_seen=now - timedelta(minutes=5))
    async with running(settings):
        store(engine, power("ALERT-N1", now - timedelta(seconds=90), 90, 3000.0))
        rule(engine, "power_above", {"threshold_w": 1000, "minutes": 1}, device_id=dev)
        [raised] = await eventually(lambda: alerts(engine), what="the alert of the new rule")
    assert raised.evidence["samples"] == 19 and raised.evidence["lasted_s"] == 90


def test_a_muted_alert_clears_quietly_and_its_next_raise_within_the_mute_sends_nothing(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-M1", last_seen=now)
    rule_id = rule(engine, "silence", {"minutes": 5}, device_id=dev)
    row = RuleRow(rule_id, "mute test", "silence", "device", dev, None, SilenceParams(5))
    subject = f"device:{dev}"
    first = raise_alert(engine, row, subject, {"n": 1}, now, ["webhook"])
    assert first is not None
    assert raise_alert(engine, row, subject, {"n": 2}, now, ["webhook"]) is None  # open already
    with engine.begin() as conn:
        conn.execute(
            update(ALERTS).where(ALERTS.c.id == first).values(muted_until=now + timedelta(hours=1))
        )
    assert clear_alert(engine, row, subject, {}, now + timedelta(minutes=1), ["webhook"]) == first
    assert clear_alert(engine, row, subject, {}, now + timedelta(minutes=1), ["webhook"]) is None
    again = raise_alert(engine, row, subject, {"n": 3}, now + timedelta(minutes=2), ["webhook"])
    assert again is not None and again != first
    clear_alert(engine, row, subject, {}, now + timedelta(minutes=3), ["webhook"])
    # After the mute: a new alert notifies again.
    third = raise_alert(engine, row, subject, {"n": 4}, now + timedelta(hours=2), ["webhook"])
    sent = [(e.alert_id, e.transition) for e in events(engine)]
    assert sent == [(first, "raised"), (third, "raised")]
    by_id = {a.id: a for a in alerts(engine)}
    assert by_id[again].muted_until == by_id[first].muted_until


async def test_any_error_of_one_send_is_a_failed_attempt_and_the_batch_goes_on(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    rows = []
    for code in ("ALERT-X1", "ALERT-X2"):
        dev = device(engine, code, last_seen=now)
        rule_id = rule(engine, "silence", {"minutes": 5}, device_id=dev)
        row = RuleRow(rule_id, code, "silence", "device", dev, None, SilenceParams(5))
        rows.append(raise_alert(engine, row, f"device:{dev}", {}, now, ["webhook"]))

    class Breaking(Sender):
        async def send(self, event: OutboxEvent) -> None:
            if event.event_id == f"alert-{rows[0]}-raised":
                raise ValueError("Header values may not contain linefeed")

    sender = Breaking(settings)
    try:
        assert await deliver_due(engine, sender, settings) == 1
    finally:
        await sender.aclose()
    first, second = events(engine)
    assert first.delivered_at is None and first.attempts == 1
    assert first.last_error == "webhook: unexpected ValueError"
    assert second.delivered_at is not None


def test_two_worker_processes_one_killed_and_restarted_raise_and_clear_each_alert_once(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    dev = device(engine, "ALERT-K1", last_seen=now - timedelta(minutes=5))
    rule(engine, "power_above", {"threshold_w": 1000, "minutes": 1}, device_id=dev)
    store(engine, power("ALERT-K1", now - timedelta(seconds=90), 90, 2000.0))
    with webhook_receiver(failures=0) as receiver:
        env = service_env(
            settings,
            POWERFLOW_ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{receiver.port}/hook",
            POWERFLOW_ALERTS_WEBHOOK_SECRET=SECRET,
            POWERFLOW_ALERTS_RULES_REFRESH_S="0.5",
            POWERFLOW_ALERTS_SILENCE_CHECK_S="0.2",
            POWERFLOW_ALERTS_OUTBOX_POLL_S="0.2",
            # A copy killed while it held an event's claim: the claim lapses after this.
            POWERFLOW_ALERTS_DELIVERY_CLAIM_S="2",
        )
        for folder in ("one", "two", "one-again"):
            (tmp_path / folder).mkdir()
        one = Service("alerts", env, tmp_path / "one").start()
        two = Service("alerts", env, tmp_path / "two").start()
        try:
            one.wait_logged("alerts_running")
            two.wait_logged("alerts_running")
            wait_for(lambda: alerts(engine), 20, what="the alert raised from stored readings")
            one.kill9()  # a crash: no clean-up
            asyncio.run(
                publish_live(settings, power("ALERT-K1", now + timedelta(seconds=5), 0, 5.0))
            )
            wait_for(lambda: cleared(engine), 20, what="the survivor's clear")
            one = Service("alerts", env, tmp_path / "one-again").start()
            one.wait_logged("alerts_running")
            asyncio.run(
                publish_live(settings, power("ALERT-K1", now + timedelta(seconds=10), 70, 1800.0))
            )
            wait_for(lambda: len(alerts(engine)) == 2, 20, what="the second alert")
            wait_for(
                lambda: (
                    [e.delivered_at for e in events(engine)].count(None) == 0
                    and len(events(engine)) == 3
                ),
                30,
                what="three notifications delivered",
            )
            assert one.alive and two.alive, one.log_text()[-2000:] + two.log_text()[-2000:]
        finally:
            one.stop()
            two.stop()
    first, second = alerts(engine)
    assert first.cleared_at is not None and second.cleared_at is None
    assert [(e.alert_id, e.transition) for e in events(engine)] == [
        (first.id, "raised"),
        (first.id, "cleared"),
        (second.id, "raised"),
    ]
    # At least once, deduplicable: every event arrived, under its one id.
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {e.event_id for e in events(engine)}
