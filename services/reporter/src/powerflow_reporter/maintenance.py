"""The reaper (rows stuck in queued/running) and the monthly schedule, each under a Redis lock.

Every reporter process runs both on a timer; the lock makes one of them do it at a time, and the
monthly report's id is derived from (site, month), so the database itself refuses a second one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import Engine, select, update

from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import DEVICES, ESG_REPORTS, SITES
from powerflow_common.logs import get_logger
from powerflow_common.periods import period_bounds_utc
from powerflow_common.report_queue import enqueue_report
from powerflow_common.report_requests import ReportRequest, insert_report
from powerflow_common.settings import Settings

__all__ = ["monthly_report_id", "reap", "run_schedule", "with_lock"]

log = get_logger(__name__)

_reports = ESG_REPORTS
_sites = SITES
_devices = DEVICES
_MONTHLY = uuid.UUID("6f0d3c1e-51a4-4b8e-9a57-2d1f0e7c9b31")


def with_lock(client: redis.Redis, key: str, ttl_s: float) -> bool:
    """Take a Redis lock that expires by itself; True if this process holds it now."""
    return bool(client.set(key, uuid.uuid4().hex, nx=True, px=max(1, int(ttl_s * 1000))))


def reap(engine: Engine, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Requeue rows untouched for ``report_stale_after_s``; fail those past the give-up age."""
    now = now or datetime.now(UTC)
    stale = now - timedelta(seconds=settings.report_stale_after_s)
    give_up = now - timedelta(seconds=settings.report_give_up_after_s)
    counts = {"requeued": 0, "failed": 0}
    with engine.connect() as conn:
        rows = conn.execute(
            select(_reports.c.id, _reports.c.created_at, _reports.c.error).where(
                _reports.c.status.in_(("queued", "running")), _reports.c.updated_at < stale
            )
        ).all()
    for row in rows:
        with begin_write(engine) as conn:
            if row.created_at < give_up:
                changed = conn.execute(
                    update(_reports)
                    .where(_reports.c.id == row.id, _reports.c.updated_at < stale)
                    .values(
                        status="failed",
                        updated_at=now,
                        error="stuck: no worker finished it in time"
                        + (f" (last: {row.error})" if row.error else ""),
                    )
                ).rowcount
                counts["failed"] += changed
                continue
            # Touch the row so the next sweep leaves it alone; a stale 'running' row can be
            # claimed again by the job it is sent to.
            changed = conn.execute(
                update(_reports)
                .where(_reports.c.id == row.id, _reports.c.updated_at < stale)
                .values(status="queued", updated_at=now)
            ).rowcount
        if changed:
            enqueue_report(settings, row.id)
            counts["requeued"] += 1
    if any(counts.values()):
        log.info("reports_reaped", **counts)
    return counts


def monthly_report_id(site_id: int, month: date) -> str:
    """The id of a site's scheduled report for a month: the same whoever computes it."""
    return str(uuid.uuid5(_MONTHLY, f"site:{site_id}:month:{month:%Y-%m}"))


def run_schedule(engine: Engine, settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Create and enqueue last month's report for every site with devices; returns new ids."""
    now = now or datetime.now(UTC)
    created: list[str] = []
    with engine.connect() as conn:
        sites = conn.execute(
            select(_sites.c.id, _sites.c.timezone).where(
                select(_devices.c.id).where(_devices.c.site_id == _sites.c.id).exists()
            )
        ).all()
    for site in sites:
        this_month_start, _ = period_bounds_utc("month", now, site.timezone)
        prev_start, prev_end = period_bounds_utc(
            "month", this_month_start - timedelta(hours=1), site.timezone
        )
        zone = ZoneInfo(site.timezone)
        first = prev_start.astimezone(zone).date()
        following = prev_end.astimezone(zone).date()
        request = ReportRequest(
            period_start=first,
            period_end=following,
            scope="site",
            site_id=site.id,
            language=settings.report_schedule_language,
        )
        report_id, is_new = insert_report(
            engine, settings, request, report_id=monthly_report_id(site.id, first)
        )
        if is_new:
            enqueue_report(settings, report_id)
            created.append(report_id)
    if created:
        log.info("monthly_reports_scheduled", count=len(created))
    return created
