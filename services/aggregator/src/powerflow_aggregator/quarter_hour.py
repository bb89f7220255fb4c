"""An hour's four quarter hours, recomputed with the hour into quarter_hour_stats.

Called by rollup._recompute inside the hour's own locked transaction, with the readings the
hour was computed from, so the quarters never disagree with their hour: the energy rules are
powerflow_common.energy's (``quarter_hour_energy``: the hour's source, split at quarter
boundaries), and CO2 uses the factor the hour used. An hour's quarters are replaced whole:
a quarter that no reading reaches any more is deleted (``delete_hour`` is the one place
where quarters are deleted, beside rollup._delete_row for the hour).

A frozen hour's quarters are never recomputed nor deleted (their raw readings may be gone):
when the hour's CO2 is restated from its stored kWh (a factor-set change), ``restate_co2``
restates theirs from their own stored kWh, in the hour's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, update

from powerflow_aggregator.rows import restated_co2, stat_row
from powerflow_common.carbon import EmissionFactor
from powerflow_common.db.dialect import dialect_of
from powerflow_common.db.models import QUARTER_HOUR_STATS
from powerflow_common.energy import HOUR, EnergySample, HourlyEnergy, quarter_hour_energy

_quarters = QUARTER_HOUR_STATS


def store_quarters(
    conn: Connection,
    *,
    device_id: int,
    hour_start: datetime,
    samples: Sequence[EnergySample],
    bidirectional: bool,
    max_gap: timedelta,
    counter_reset_tolerance_wh: float,
    factor: EmissionFactor | None,
    factor_set: str,
    computed_at: datetime,
) -> int:
    """Upsert the hour's non-empty quarters, delete its empty ones; the number stored."""
    computed = quarter_hour_energy(
        samples,
        hour_start,
        hour_start + HOUR,
        max_gap=max_gap,
        counter_reset_tolerance_wh=counter_reset_tolerance_wh,
        bidirectional=bidirectional,
    )
    rows: list[dict[str, Any]] = []
    empty: list[datetime] = []
    for quarter in computed:
        if _is_empty(quarter):
            empty.append(quarter.hour_start)
            continue
        row = stat_row(
            quarter,
            device_id=device_id,
            factor=factor,
            factor_set=factor_set,
            computed_at=computed_at,
        )
        row["quarter_start"] = row.pop("hour_start")
        row["hour_start"] = hour_start
        rows.append(row)
    if empty:
        conn.execute(
            delete(_quarters).where(
                _quarters.c.device_id == device_id, _quarters.c.quarter_start.in_(empty)
            )
        )
    if rows:  # one statement for the hour's quarters
        upsert = dialect_of(conn).upsert(_quarters, ["device_id", "quarter_start"], rows)
        conn.execute(
            upsert.on_conflict(
                {k: upsert.incoming[k] for k in rows[0] if k not in ("device_id", "quarter_start")}
            )
        )
    return len(rows)


def _is_empty(quarter: HourlyEnergy) -> bool:
    """No reading and no energy in the quarter. Unlike an hour, its source says nothing: it is
    the hour's (a quarter in an hour of readings may have none of its own)."""
    return (
        quarter.samples == 0
        and quarter.coverage == 0
        and quarter.energy_kwh == quarter.export_kwh == 0
        and quarter.unallocated_kwh == quarter.unallocated_export_kwh == 0
    )


def delete_hour(conn: Connection, device_id: int, hour_start: datetime) -> None:
    """Delete the hour's quarters (the hour itself went: no reading is near it any more)."""
    conn.execute(
        delete(_quarters).where(
            _quarters.c.device_id == device_id,
            _quarters.c.quarter_start >= hour_start,
            _quarters.c.quarter_start < hour_start + HOUR,
        )
    )


def restate_co2(
    conn: Connection,
    *,
    device_id: int,
    hour_start: datetime,
    factor: EmissionFactor | None,
    factor_set: str,
    computed_at: datetime,
) -> int:
    """A frozen hour's quarters: CO2 from their stored kWh under ``factor``; the number restated.

    ``factor`` is the one the hour's own restatement used, so the quarters add up to it.
    """
    in_hour = (
        _quarters.c.device_id == device_id,
        _quarters.c.quarter_start >= hour_start,
        _quarters.c.quarter_start < hour_start + HOUR,
    )
    rows = conn.execute(
        select(
            _quarters.c.quarter_start,
            _quarters.c.energy_kwh,
            _quarters.c.unallocated_kwh,
            _quarters.c.flags,
        ).where(*in_hour)
    ).all()
    for row in rows:  # at most four
        conn.execute(
            update(_quarters)
            .where(
                _quarters.c.device_id == device_id, _quarters.c.quarter_start == row.quarter_start
            )
            .values(
                restated_co2(
                    row.energy_kwh, row.unallocated_kwh, row.flags, factor, factor_set, computed_at
                )
            )
        )
    return len(rows)
