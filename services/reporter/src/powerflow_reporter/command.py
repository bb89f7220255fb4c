"""``powerflow report``: ask for a report from the command line, and optionally wait for it."""

from __future__ import annotations

import time
from datetime import date
from typing import Literal

from rich.console import Console

from powerflow_common.db.engine import make_engine
from powerflow_common.report_requests import (
    InvalidReportRequest,
    ReportRequest,
    create_report,
    get_report,
    report_dir,
)
from powerflow_common.settings import Settings

__all__ = ["request_report"]


def request_report(
    settings: Settings,
    *,
    start: date,
    end: date,
    site_id: int | None,
    language: Literal["en", "ko"],
    wait: bool,
    timeout_s: float,
    console: Console,
) -> int:
    """Create a report, print its id, and with ``wait`` follow it to done or failed (exit code)."""
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        try:
            request = ReportRequest(
                period_start=start,
                period_end=end,
                scope="site" if site_id is not None else "organisation",
                site_id=site_id,
                language=language,
            )
            report_id = create_report(engine, settings, request)
        except (InvalidReportRequest, ValueError) as exc:
            console.print(f"[red]{exc}[/]")
            return 2
        console.print(f"report {report_id} queued")
        print(report_id)
        if not wait:
            return 0
        deadline = time.monotonic() + timeout_s
        last = ""
        with console.status("waiting for a reporter worker (powerflow reporter)...") as status:
            while time.monotonic() < deadline:
                view = get_report(engine, settings, report_id)
                assert view is not None
                shown = f"{view.status}" + (f" ({view.error})" if view.error else "")
                if shown != last:
                    console.print(f"  {time.strftime('%H:%M:%S')} {shown}")
                    status.update(f"report {view.status}...")
                    last = shown
                if view.status == "done":
                    directory = report_dir(settings, report_id)
                    for kind in view.files:
                        console.print(f"  {kind}: {directory}")
                    console.print(f"[green]done[/]: {directory}")
                    return 0
                if view.status == "failed":
                    console.print(f"[red]failed[/]: {view.error}")
                    return 1
                time.sleep(0.5)
        console.print("[yellow]still not done; the report stays queued[/]")
        return 3
    finally:
        engine.dispose()
