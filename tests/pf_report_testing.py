"""Report test support: a fake Anthropic Messages API on loopback and a small known data set.

The fake is a real HTTP server answering ``POST /v1/messages`` as the real API does (status
codes, error bodies, message JSON), so the real SDK is exercised end to end.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from pf_testing import wait_for
from powerflow_common.db.models import Device, HourlyStat, Site
from powerflow_common.report_requests import ReportView, get_report
from powerflow_common.settings import Settings

SEOUL = ZoneInfo("Asia/Seoul")
# Three local days, Friday 2026-03-06 to Sunday; the previous three days for the change.
PERIOD_FIRST = datetime(2026, 3, 6, tzinfo=SEOUL)
PERIOD_END = PERIOD_FIRST + timedelta(days=3)

GOOD_ANSWER: dict[str, Any] = {
    "executive_summary": "From {{period_start_date}} to {{period_end_date}} the site used "
    "{{total_kwh}}, emitting {{co2_location_kg}} under Scope 2.",
    "consumption_analysis": "The largest consumer was {{device_top1_name}} with "
    "{{device_top1_kwh}}.",
    "emissions": "Location-based emissions were {{co2_location_t}} in 2026.",
    "environmental_correlations": "Power and temperature had r = {{corr_temperature_r}}.",
    "electricity_cost": "The energy-related cost was {{cost1_energy_related_total}} "
    "{{cost1_currency}}.",
    "baseline_savings": "Savings against the baseline were {{baseline1_savings_pct}} "
    "± {{baseline1_uncertainty_pct}}.",
    "alerts": "{{alerts_count}} alerts were active, {{alerts_open_count}} open at the end.",
    "recommendations": [
        {
            "text": "Lower the night base load: {{savings_night_base_kwh}}.",
            "cites": ["savings_night_base_kwh"],
        },
    ],
}


@dataclass
class Reply:
    """One scripted answer: an HTTP status with a body, after an optional delay."""

    status: int = 200
    body: dict[str, Any] | None = None
    delay_s: float = 0.0


def message(answer: dict[str, Any] | str, stop_reason: str = "end_turn") -> Reply:
    """A successful Messages API answer whose text is ``answer`` (JSON-encoded if a dict)."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return Reply(
        200,
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5-5",
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 120,
                "output_tokens": 80,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 0,
            },
        },
    )


def error(status: int, kind: str) -> Reply:
    """An API error as the real API sends it (e.g. 429 rate_limit_error, 529 overloaded_error)."""
    return Reply(status, {"type": "error", "error": {"type": kind, "message": kind}})


class FakeAnthropic:
    """``POST /v1/messages`` on 127.0.0.1: scripted replies, then ``default``; records requests."""

    def __init__(self, default: Reply | None = None) -> None:
        self.script: deque[Reply] = deque()
        self.default = default or message(GOOD_ANSWER)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    reply = fake.script.popleft() if fake.script else fake.default
                if self.path.split("?")[0] != "/v1/messages":
                    reply = error(404, "not_found_error")
                if reply.delay_s:
                    time.sleep(reply.delay_s)  # the server is slow; the client must time out
                payload = json.dumps(reply.body or {}).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("request-id", "req_fake")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seed_site(
    engine: Engine,
    *,
    names: Iterable[str] = ("Main meter", "Office plug"),
    site_name: str = "HQ",
    floor_area_m2: float | None = 100.0,
) -> tuple[int, list[int]]:
    """A site with a main meter and a sub-meter and six days of hourly rows; (site, devices)."""
    now = datetime.now(UTC)
    names = list(names)
    with engine.begin() as conn:
        site_id = int(
            conn.execute(
                insert(Site).values(
                    name=site_name,
                    timezone="Asia/Seoul",
                    region="KR",
                    floor_area_m2=floor_area_m2,
                    created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        ids = []
        for i, (name, role) in enumerate(zip(names, ("main", "sub"), strict=False)):
            ids.append(
                int(
                    conn.execute(
                        insert(Device).values(
                            code=f"dev-{i + 1}",
                            name=name,
                            site_id=site_id,
                            location=name,
                            payload_format="original",
                            meter_role=role,
                            bidirectional=False,
                            first_seen_at=now,
                            admitted_at=now,
                            last_seen_at=now,
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
            )
        rows = []
        start = (PERIOD_FIRST - timedelta(days=3)).astimezone(UTC)
        for h in range(6 * 24):
            hour = start + timedelta(hours=h)
            local = hour.astimezone(SEOUL)
            main_kwh = 0.5 if local.hour < 5 else 1.0 + (0.5 if local.weekday() < 5 else 0.0)
            for device_id, kwh in zip(ids, (main_kwh, 0.2), strict=False):
                rows.append(
                    {
                        "device_id": device_id,
                        "hour_start": hour,
                        "samples": 720,
                        "coverage": 1.0,
                        "energy_kwh": kwh,
                        "co2_kg": kwh * 0.478,
                        "emission_factor_id": 1,
                        "factor_set": "original",
                        "power_avg_w": kwh * 1000,
                        "power_max_w": kwh * 1200,
                        "temperature_avg_c": 12.0 + local.hour / 4,
                        "humidity_avg_pct": 40.0 + local.hour % 5,
                        "brightness_avg_lux": 700.0 if 9 <= local.hour < 17 else 5.0,
                        "computed_at": now,
                    }
                )
        if rows:
            conn.execute(insert(HourlyStat), rows)
    return site_id, ids


def wait_finished(
    engine: Engine, settings: Settings, report_id: str, timeout_s: float = 30
) -> ReportView:
    """Wait until the report is done or failed and return it."""

    def finished() -> ReportView | None:
        view = get_report(engine, settings, report_id)
        return view if view is not None and view.status in ("done", "failed") else None

    result: ReportView = wait_for(finished, timeout_s, what=f"report {report_id} to finish")
    return result
