"""The database sums exactly the hours the pure rule counts, whatever the site history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert

from pf_testing import clean_tables
from powerflow_common.db.models import DEVICE_SITES, DEVICES, HOURLY_STATS, SITES
from powerflow_common.queries import load_placements, load_scope, period_sums, range_sums
from powerflow_common.totals import placement_at, spans

# Their SQL differs per engine (db.sqltime): run on SQLite and on MariaDB.
pytestmark = pytest.mark.both_backends

T0 = datetime(2026, 2, 1, tzinfo=UTC)
H = timedelta(hours=1)
START, END = T0 - timedelta(days=1), T0 + timedelta(days=3)

roles = st.sampled_from(["main", "sub", "standalone"])
sites = st.sampled_from([None, 1, 2])
# (device 1-4, site, role, valid from hour; None: the devices row only, no history)
# Few devices and few instants, so that hours often fall on a move (the edge that matters).
MOVE_HOURS = [0, 6, 12, 18]
moves = st.lists(
    st.tuples(st.integers(1, 3), sites, roles, st.none() | st.sampled_from(MOVE_HOURS)),
    min_size=3,
    max_size=10,
)
hours = st.lists(
    st.tuples(
        st.integers(1, 3), st.sampled_from([-1, 0, 5, 6, 11, 12, 18, 30]), st.integers(1, 5000)
    ),
    max_size=20,
)


def load(
    engine: Engine,
    history: list[tuple[int, int | None, str, int | None]],
    rows: list[tuple[int, int, int]],
) -> None:
    clean_tables(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(SITES),
            [
                {"id": 1, "name": "Seoul", "timezone": "Asia/Seoul", "created_at": now},
                {"id": 2, "name": "London", "timezone": "Europe/London", "created_at": now},
            ],
        )
        current: dict[int, tuple[int | None, str]] = {}
        for device, site, role, _ in history:
            current[device] = (site, role)  # the last one listed is the current placement
        for device in range(1, 4):
            site, role = current.get(device, (None, "standalone"))
            conn.execute(
                insert(DEVICES).values(
                    id=device,
                    code=f"d{device}",
                    site_id=site,
                    meter_role=role,
                    payload_format="original",
                    bidirectional=False,
                    first_seen_at=T0,
                    admitted_at=T0,
                    last_seen_at=T0,
                )
            )
        dated = {(d, h): (s, r) for d, s, r, h in history if h is not None}
        for (device, hour), (site, role) in dated.items():
            conn.execute(
                insert(DEVICE_SITES).values(
                    device_id=device,
                    site_id=site,
                    meter_role=role,
                    valid_from=T0 + hour * H,
                    recorded_at=now,
                )
            )
        unique = {(d, h): wh for d, h, wh in rows}
        for (device, hour), wh in unique.items():
            conn.execute(
                insert(HOURLY_STATS).values(
                    device_id=device,
                    hour_start=T0 + hour * H,
                    energy_kwh=wh / 1000,
                    co2_kg=wh / 1000 * 0.478,
                    computed_at=now,
                )
            )


@settings(
    deadline=None, max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moves, hours)
def test_sql_totals_equal_the_pure_rule_applied_hour_by_hour(
    engine: Engine,
    history: list[tuple[int, int | None, str, int | None]],
    rows: list[tuple[int, int, int]],
) -> None:
    load(engine, history, rows)
    unique = {(d, h): wh for d, h, wh in rows}
    with engine.connect() as conn:
        all_spans = spans(load_placements(conn))
        for kind, site_id in (("organisation", None), ("site", 1), ("site", 2)):
            expected_wh = 0
            for (device, hour), wh in unique.items():
                at = T0 + hour * H
                span = placement_at(all_spans, device, at)
                assert span is not None
                if (
                    START <= at < END
                    and span.counted
                    and (site_id is None or span.site_id == site_id)
                ):
                    expected_wh += wh
            scope = load_scope(conn, kind, default_tz="Asia/Seoul", site_id=site_id)  # type: ignore[arg-type]
            sums, _ = period_sums(conn, scope, "day", START, END)
            assert round(sum(s.energy_kwh for s in sums) * 1000) == expected_wh, (kind, site_id)
            assert round(range_sums(conn, scope, START, END).energy_kwh * 1000) == expected_wh


def test_a_devices_row_changed_in_sql_wins_over_its_latest_history_row_and_says_so(
    engine: Engine,
) -> None:
    # History: site 1, then site 2 from hour 6; the devices row says site 1 (changed in SQL).
    load(engine, [(1, 1, "standalone", 0), (1, 2, "standalone", 6), (1, 1, "standalone", None)], [])
    with structlog.testing.capture_logs() as logs, engine.connect() as conn:
        placements = load_placements(conn, [1])
    assert [(p.site_id, p.valid_from) for p in placements] == [(1, T0), (1, T0 + 6 * H)]
    (warning,) = [e for e in logs if e["event"] == "device_site_history_mismatch"]
    assert warning["device"] == "d1" and warning["device_row"] == [1, "standalone"]
