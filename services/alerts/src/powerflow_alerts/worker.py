"""The alerts worker: rules judged on the live readings, a timer, and the rolled-up hours.

- **Live** (``silence``, ``power_above``, ``power_below``): a core NATS subscription to
  ``readings.>`` (what the API's live view reads; every copy sees every reading, no queue
  group). Each reading moves its device's runs (alert_rules.advance_run); a run that lasted
  its minutes raises, a reading on the other side clears; any reading clears a silence.
- **Timer**: every ``alerts_silence_check_s`` the devices' last readings (kept in memory,
  seeded from ``devices.last_seen_at``) are compared with the silence rules, and due
  base-load / daily evaluations are run. No database polling: the only periodic query is the
  rules refresh (``alerts_rules_refresh_s``).
- **Rolled up** (``base_load_jump``, ``daily_kwh_*``): a durable pull consumer on ROLLUPS
  (powerflow_common.consumers.consume supplies the edge; this supplies ``pull`` and
  ``handle``). A rolled-up hour of the latest complete night or day schedules its judgement
  ``alerts_rollup_grace_s`` after the period ended; at start every such rule is judged once
  for its latest complete period (a restart loses nothing it had scheduled).

State lives in the database (powerflow_common.alerts_store): an alert is raised once by a
unique key, cleared once by a conditional update, its notifications written with it. What a
copy keeps in memory (runs, last readings, which alerts are open) is rebuilt at start: runs
from the readings of the rules' last minutes, open alerts from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import Engine, select

from powerflow_alerts import metrics
from powerflow_alerts.delivery import Sender, configured_channels, outbox_loop
from powerflow_alerts.history import (
    base_load_check,
    daily_check,
    latest_complete_day,
    latest_complete_night,
)
from powerflow_common.alert_rules import (
    DAILY_KINDS,
    LIVE_KINDS,
    FittedBaselines,
    NoFittedBaselines,
    PowerRun,
    SilenceParams,
    ThresholdParams,
    Verdict,
    advance_run,
    night_bounds_utc,
    run_verdict,
    silence_verdict,
)
from powerflow_common.alerts_store import (
    RuleRow,
    clear_alert,
    load_rules,
    open_alerts,
    raise_alert,
    subject_of,
)
from powerflow_common.consumers import (
    TRANSIENT_DB_ERRORS,
    DeadLetters,
    consume,
    dead_letter_id,
    ensure_pull_consumer,
    fetch,
    retry_transient,
    settle,
)
from powerflow_common.db.models import DEVICES, READINGS, SITES
from powerflow_common.logs import get_logger
from powerflow_common.periods import period_bounds_utc
from powerflow_common.settings import Settings
from powerflow_common.wire import ReadingBatch, RolledUp, batch_decoder, rolled_up_decoder

log = get_logger(__name__)

# Readings read per (rule, device) to rebuild a run at start: 5 s readings for a week.
SEED_READINGS_MAX = 120_000
_live_decoder = batch_decoder


def _local_noon(day: date, tz: str) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: int
    site_id: int | None
    timezone: str


async def ensure_alerts_consumer(js: JetStreamContext, settings: Settings) -> None:
    """The durable pull consumer on ROLLUPS shared by every alerts copy."""
    names = settings.names
    await ensure_pull_consumer(
        js,
        stream=names.rollups_stream,
        durable=names.alerts_consumer,
        filter_subject=names.rollups_subject,
        ack_wait_s=settings.alerts_ack_wait_s,
    )


def _db_failed(_exc: BaseException) -> None:
    metrics.DATABASE_UP.set(0)


def _db_recovered() -> None:
    metrics.DATABASE_UP.set(1)


class AlertsWorker:
    """One copy of the alerts worker; any number may run against one database and NATS."""

    def __init__(
        self,
        *,
        nc: NATS,
        js: JetStreamContext,
        engine: Engine,
        settings: Settings,
        baselines: FittedBaselines | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._nc = nc
        self._js = js
        self._engine = engine
        self._settings = settings
        self._names = settings.names
        self._baselines = baselines or NoFittedBaselines()
        self._now = clock
        self._channels = configured_channels(settings)
        self._max_gap = timedelta(seconds=settings.max_gap_s)
        self.rules: list[RuleRow] = []
        self._devices: dict[str, DeviceInfo] = {}
        self._by_id: dict[int, DeviceInfo] = {}
        self._site_tz: dict[int, str] = {}
        self._last_seen: dict[int, datetime] = {}
        self._runs: dict[tuple[int, int], PowerRun | None] = {}
        self._rule_devices: dict[int, list[int]] = {}
        self._live_rules_of: dict[int, list[RuleRow]] = {}
        self._open: set[tuple[int, str]] = set()
        # (rule id) -> (period judged next, when): base-load nights and days.
        self._pending: dict[int, tuple[date, datetime]] = {}
        self._scheduled_once: set[int] = set()
        self._live: asyncio.Queue[ReadingBatch] = asyncio.Queue(settings.alerts_live_queue_size)
        self.wake_outbox = asyncio.Event()
        # Set once subscribed and the first judgements are made (tests wait for it).
        self.ready = asyncio.Event()
        self._dead_letters = DeadLetters(
            js,
            self._names,
            stage="alerts",
            max_deliver=settings.alerts_max_deliver,
            payload_limit=settings.rejected_payload_max_bytes,
            count=lambda r: metrics.DEAD_LETTERED.labels(r).inc(),
        )

    # --- database, outages waited out ------------------------------------------------------

    async def _db(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return await retry_transient(
            what,
            lambda: asyncio.to_thread(fn, *args),
            transient=TRANSIENT_DB_ERRORS,
            on_failure=_db_failed,
            on_recovery=_db_recovered,
        )

    # --- rules, devices, open alerts -------------------------------------------------------

    def _load(self) -> tuple[list[RuleRow], list[int], list[Any], dict[int, str], set[Any]]:
        with self._engine.connect() as conn:
            rules, invalid = load_rules(conn)
            devices = list(
                conn.execute(
                    select(DEVICES.c.id, DEVICES.c.code, DEVICES.c.site_id, DEVICES.c.last_seen_at)
                )
            )
            sites = {r.id: r.timezone for r in conn.execute(select(SITES.c.id, SITES.c.timezone))}
            return rules, invalid, devices, sites, open_alerts(conn)

    async def refresh_and_seed(self) -> None:
        await self.refresh()
        await self.seed_runs()

    async def refresh(self) -> None:
        """Re-read rules, devices and open alerts (and schedule new period rules)."""
        rules, invalid, devices, sites, opened = await self._db("alerts_refresh", self._load)
        default_tz = self._settings.organisation_timezone
        self._site_tz = sites
        infos = [
            DeviceInfo(
                d.id, d.site_id, sites.get(d.site_id, default_tz) if d.site_id else default_tz
            )
            for d in devices
        ]
        self._devices = {d.code: info for d, info in zip(devices, infos, strict=True)}
        self._by_id = {info.id: info for info in infos}
        for d in devices:
            seen = self._last_seen.get(d.id)
            if seen is None or d.last_seen_at > seen:
                self._last_seen[d.id] = d.last_seen_at
        self._open = opened
        # Indexes, so a reading costs the rules of its device, not every rule and device.
        self._rule_devices = {r.id: self._devices_of(r) for r in rules}
        live: dict[int, list[RuleRow]] = defaultdict(list)
        for r in rules:
            if r.kind in LIVE_KINDS:
                for device_id in self._rule_devices[r.id]:
                    live[device_id].append(r)
        self._live_rules_of = dict(live)
        self.rules = rules
        metrics.RULES_LOADED.set(len(rules))
        metrics.RULES_INVALID.set(len(invalid))
        metrics.OPEN_ALERTS.set(len(opened))
        now = self._now()
        for rule in rules:
            periodic = rule.kind in DAILY_KINDS or rule.kind == "base_load_jump"
            if periodic and rule.id not in self._scheduled_once:
                self._scheduled_once.add(rule.id)
                self._schedule(rule, now)

    def _subject_devices(self, rule: RuleRow) -> list[int]:
        return self._rule_devices.get(rule.id, [])

    def _devices_of(self, rule: RuleRow) -> list[int]:
        if rule.scope == "device":
            return [rule.device_id] if rule.device_id in self._by_id else []
        return [i.id for i in self._by_id.values() if i.site_id == rule.site_id]

    def _subject(self, rule: RuleRow) -> str:
        ident = rule.device_id if rule.scope == "device" else rule.site_id
        return subject_of(rule.scope, int(ident or 0))

    def _tz(self, rule: RuleRow) -> str:
        if rule.scope == "site" and rule.site_id is not None:
            return self._site_tz.get(rule.site_id, self._settings.organisation_timezone)
        info = self._by_id.get(rule.device_id or -1)
        return info.timezone if info else self._settings.organisation_timezone

    # --- raise and clear -------------------------------------------------------------------

    async def judge(
        self, rule: RuleRow, subject: str, verdict: Verdict, *, may_clear: bool = True
    ) -> None:
        """Raise or clear the alert of (rule, subject) as ``verdict`` says; once each."""
        key = (rule.id, subject)
        now = self._now()
        if verdict.firing and key not in self._open:
            alert_id = await self._db(
                "alert_raise",
                raise_alert,
                self._engine,
                rule,
                subject,
                verdict.evidence,
                now,
                self._channels,
            )
            self._open.add(key)
            if alert_id is not None:
                metrics.ALERTS_RAISED.labels(rule.kind).inc()
                log.info("alert_raised", alert_id=alert_id, rule_id=rule.id, subject=subject)
                self.wake_outbox.set()
        elif not verdict.firing and key in self._open:
            alert_id = await self._db(
                "alert_clear",
                clear_alert,
                self._engine,
                rule,
                subject,
                verdict.evidence,
                now,
                self._channels,
            )
            self._open.discard(key)
            if alert_id is not None:
                metrics.ALERTS_CLEARED.labels(rule.kind).inc()
                log.info("alert_cleared", alert_id=alert_id, rule_id=rule.id, subject=subject)
                self.wake_outbox.set()

    # --- live readings ---------------------------------------------------------------------

    async def _on_live(self, msg: Msg) -> None:
        try:
            batch = _live_decoder.decode(msg.data)
        except msgspec.DecodeError:
            metrics.LIVE_BATCHES_DROPPED.labels("undecodable").inc()
            return
        try:
            self._live.put_nowait(batch)
        except asyncio.QueueFull:
            metrics.LIVE_BATCHES_DROPPED.labels("queue_full").inc()
            log.error("alerts_live_queue_full", size=self._live.maxsize)

    async def _live_loop(self) -> None:
        while True:
            batch = await self._live.get()
            try:
                await self.on_batch(batch)
            except Exception as exc:
                metrics.EVALUATION_ERRORS.labels("live").inc()
                log.exception("alerts_live_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            else:
                metrics.LIVE_BATCHES_JUDGED.inc()

    async def on_batch(self, batch: ReadingBatch) -> None:
        """Judge the live rules on one batch of readings."""
        by_device: dict[int, list[tuple[datetime, float | None]]] = defaultdict(list)
        for r in batch.readings:
            info = self._devices.get(r.device_code)
            if info is None:
                metrics.LIVE_READINGS_SKIPPED.labels("unknown_device").inc()
                continue
            if r.ts.tzinfo is None:
                metrics.LIVE_READINGS_SKIPPED.labels("local_time").inc()
                continue
            by_device[info.id].append((r.ts, r.power_w))
        for device_id, readings in by_device.items():
            readings.sort(key=lambda x: x[0])
            newest = readings[-1][0]
            if newest > self._last_seen.get(device_id, newest - timedelta(seconds=1)):
                self._last_seen[device_id] = newest
            await self._live_rules(device_id, readings)

    async def _live_rules(
        self, device_id: int, readings: Sequence[tuple[datetime, float | None]]
    ) -> None:
        subject = subject_of("device", device_id)
        for rule in self._live_rules_of.get(device_id, []):
            if rule.kind == "silence" and (rule.id, subject) in self._open:
                assert isinstance(rule.params, SilenceParams)
                verdict = silence_verdict(readings[-1][0], self._now(), rule.params)
                if not verdict.firing:
                    await self.judge(rule, subject, verdict)
            elif isinstance(rule.params, ThresholdParams):
                key = (rule.id, device_id)
                for ts, power_w in readings:
                    if power_w is None:
                        continue
                    run = advance_run(
                        self._runs.get(key),
                        rule.kind,
                        ts,
                        power_w,
                        rule.params.threshold_w,
                        self._max_gap,
                    )
                    self._runs[key] = run
                    verdict = run_verdict(run, rule.kind, rule.params)
                    # Cleared only by a reading on the other side, not by a broken run.
                    if verdict.firing or run is None:
                        await self.judge(rule, subject, verdict)

    def _seed_readings(self, device_id: int, since: datetime) -> list[tuple[datetime, float]]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(READINGS.c.ts, READINGS.c.power_w)
                .where(
                    READINGS.c.device_id == device_id,
                    READINGS.c.ts >= since,
                    READINGS.c.power_w.is_not(None),
                )
                .order_by(READINGS.c.ts)
                .limit(SEED_READINGS_MAX)
            )
            return [(r.ts, r.power_w) for r in rows]

    async def seed_runs(self) -> None:
        """Rebuild the threshold runs from the stored readings of each rule's last minutes.

        Done for every (rule, device) not seen before: at start, and for rules and devices
        that appear later (a new rule is judged on what is stored, not only on what comes).
        """
        now = self._now()
        for rule in self.rules:
            if not isinstance(rule.params, ThresholdParams):
                continue
            since = now - timedelta(minutes=rule.params.minutes) - self._max_gap
            for device_id in self._subject_devices(rule):
                if (rule.id, device_id) in self._runs:
                    continue
                readings = await self._db("alerts_seed", self._seed_readings, device_id, since)
                run = None
                for ts, power_w in readings:
                    run = advance_run(
                        run, rule.kind, ts, power_w, rule.params.threshold_w, self._max_gap
                    )
                self._runs[(rule.id, device_id)] = run
                verdict = run_verdict(run, rule.kind, rule.params)
                if verdict.firing:  # a restart only raises; readings clear
                    await self.judge(rule, subject_of("device", device_id), verdict)

    # --- the timer: silence and due period judgements ---------------------------------------

    async def tick(self) -> None:
        now = self._now()
        for rule in self.rules:
            if isinstance(rule.params, SilenceParams):
                for device_id in self._subject_devices(rule):
                    verdict = silence_verdict(self._last_seen.get(device_id), now, rule.params)
                    if verdict.firing:
                        await self.judge(rule, subject_of("device", device_id), verdict)
        due = [rid for rid, (_, at) in self._pending.items() if at <= now]
        rules = {r.id: r for r in self.rules}
        for rule_id in due:
            period, _ = self._pending.pop(rule_id)
            if (found := rules.get(rule_id)) is not None:
                await self._judge_period(found, period)

    def _latest_period(self, rule: RuleRow, now: datetime) -> tuple[date, datetime]:
        """The rule's latest complete night or day and when it may be judged."""
        tz = self._tz(rule)
        grace = timedelta(seconds=self._settings.alerts_rollup_grace_s)
        if rule.kind == "base_load_jump":
            night = latest_complete_night(now, tz)
            return night, night_bounds_utc(night, tz)[1] + grace
        day = latest_complete_day(now, tz)
        end = period_bounds_utc("day", _local_noon(day, tz), tz)[1]
        return day, end + grace

    def _schedule(self, rule: RuleRow, now: datetime) -> None:
        self._pending[rule.id] = self._latest_period(rule, now)

    async def _judge_period(self, rule: RuleRow, period: date) -> None:
        default_tz = self._settings.organisation_timezone
        try:
            if rule.kind == "base_load_jump":
                verdict = await self._db(
                    "alerts_base_load", base_load_check, self._engine, rule, period, default_tz
                )
            else:
                verdict = await self._db(
                    "alerts_daily",
                    daily_check,
                    self._engine,
                    rule,
                    period,
                    default_tz,
                    self._baselines,
                )
        except Exception as exc:
            metrics.EVALUATION_ERRORS.labels(rule.kind).inc()
            log.exception("alerts_evaluation_failed", rule_id=rule.id, error=str(exc)[:300])
            return
        if verdict is not None:
            await self.judge(rule, self._subject(rule), verdict)

    # --- rolled-up hours -------------------------------------------------------------------

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        got = await fetch(sub, self._settings.alerts_batch_max_messages, 0.5)
        return await self._dead_letters.screen(got)

    async def _handle(self, messages: Sequence[Msg]) -> None:
        for msg in messages:
            # One message's unexpected failure is logged, counted and dead-lettered, never
            # raised: an exception here would end consume() and with it every later
            # judgement of the daily and base-load rules.
            try:
                await self._handle_one(msg)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                metrics.EVALUATION_ERRORS.labels("rollups").inc()
                log.exception("alerts_rollup_failed", error=error)
                await self._dead_letters.send(
                    "alerts_failed",
                    f"handling a ROLLUPS message failed: {error}",
                    msg.data,
                    dead_letter_id("f", msg),
                )
                await settle("term", msg, msg.term)
            else:
                metrics.ROLLUPS_HANDLED.inc()

    async def _handle_one(self, msg: Msg) -> None:
        try:
            rolled: RolledUp = rolled_up_decoder.decode(msg.data)
        except msgspec.DecodeError:
            await self._dead_letters.send(
                "undecodable_rolled_up",
                "a ROLLUPS message that is not a list of buckets",
                msg.data,
                dead_letter_id("u", msg),
            )
            await settle("term", msg, msg.term)
            return
        # An hour without a UTC offset cannot be placed on a period (comparing it raises), as
        # live readings without one are skipped: the message is refused whole, with its reason.
        if any(bucket.hour_start.tzinfo is None for bucket in rolled.buckets):
            await self._dead_letters.send(
                "local_time_rolled_up",
                "a ROLLUPS bucket whose hour_start has no UTC offset",
                msg.data,
                dead_letter_id("l", msg),
            )
            await settle("term", msg, msg.term)
            return
        touched: dict[int, set[datetime]] = defaultdict(set)
        for bucket in rolled.buckets:
            touched[bucket.device_id].add(bucket.hour_start)
        self.schedule_touched(touched)
        await settle("ack", msg, msg.ack)

    def schedule_touched(self, touched: dict[int, set[datetime]]) -> None:
        """Schedule the period rules whose latest complete period has a rolled-up hour."""
        now = self._now()
        for rule in self.rules:
            if not (rule.kind in DAILY_KINDS or rule.kind == "base_load_jump"):
                continue
            hours = set().union(*(touched.get(d, set()) for d in self._subject_devices(rule)))
            if not hours:
                continue
            period, at = self._latest_period(rule, now)
            tz = self._tz(rule)
            if rule.kind == "base_load_jump":
                start, end = night_bounds_utc(period, tz)
            else:
                start, end = period_bounds_utc("day", _local_noon(period, tz), tz)
            # An hour touches a period when it overlaps it (a night may start mid-hour).
            if any(h < end and h + timedelta(hours=1) > start for h in hours):
                self._pending[rule.id] = (period, at)

    # --- running ---------------------------------------------------------------------------

    async def _every(self, interval_s: float, fn: Callable[[], Any], stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            if stop.is_set():
                return
            try:
                await fn()
            except Exception as exc:
                log.exception("alerts_timer_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and deliver until ``stop`` is set."""
        metrics.DATABASE_UP.set(1)
        await self.refresh()
        sub = await self._nc.subscribe(self._names.readings_wildcard, cb=self._on_live)
        await self.seed_runs()
        await self.tick()
        sender = Sender(self._settings)
        s = self._settings
        tasks = [
            asyncio.create_task(self._live_loop(), name="live"),
            asyncio.create_task(
                self._every(s.alerts_rules_refresh_s, self.refresh_and_seed, stop), name="refresh"
            ),
            asyncio.create_task(
                self._every(s.alerts_silence_check_s, self.tick, stop), name="tick"
            ),
            asyncio.create_task(
                outbox_loop(self._engine, sender, s, stop, self.wake_outbox), name="outbox"
            ),
            asyncio.create_task(
                consume(
                    self._js,
                    stream=self._names.rollups_stream,
                    durable=self._names.alerts_consumer,
                    dead_letters=self._dead_letters,
                    stop=stop,
                    pull=self._pull,
                    handle=self._handle,
                ),
                name="rollups",
            ),
        ]
        log.info("alerts_running", rules=len(self.rules), channels=self._channels)
        self.ready.set()
        stopped = asyncio.create_task(stop.wait())
        try:
            # Waits on the tasks too: one that ends before ``stop`` (an error no loop caught)
            # ends run() with that error, so the process exits non-zero and its supervisor
            # restarts it, instead of a copy that says it is ready and judges nothing.
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            died = [task for task in tasks if task in done]
            if died and not stop.is_set():
                exc = died[0].exception() if not died[0].cancelled() else None
                log.error(
                    "alerts_task_died",
                    task=died[0].get_name(),
                    error=f"{type(exc).__name__}: {exc}"[:300] if exc else "ended",
                )
                self.ready.clear()
                raise RuntimeError("an alerts task ended before the stop") from exc
        finally:
            stopped.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await sender.aclose()
