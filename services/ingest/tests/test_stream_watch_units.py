"""ingest's stream watch: REJECTED evictions counted from the head's advance, alerts said once."""

from __future__ import annotations

import dataclasses

from powerflow_common.jetstream import StreamUsage
from powerflow_common.settings import Settings
from powerflow_ingest import metrics
from powerflow_ingest.stream_watch import StreamWatch

MIB = 1024 * 1024


def rejected(first_seq: int, last_seq: int, used: int) -> StreamUsage:
    return StreamUsage(
        name="t1_REJECTED",
        retention_ok=True,
        messages=last_seq - first_seq + 1,
        bytes=used,
        max_bytes=256 * MIB,
        first_seq=first_seq,
        last_seq=last_seq,
    )


def evicted(limit: str) -> float:
    return float(metrics.REJECTED_EVICTED.labels(limit)._value.get())


def test_rejected_records_evicted_are_the_advance_of_its_first_sequence() -> None:
    watch = StreamWatch(Settings(_env_file=None, namespace="t1"))
    by_bytes, by_age = evicted("bytes"), evicted("age")
    # What was evicted before ingest started is said, not counted as new.
    watch.observe([rejected(first_seq=11, last_seq=100, used=255 * MIB)])
    assert evicted("bytes") == by_bytes
    # Hand-computed: the head moved from 11 to 41 while full: 30 records went for space.
    watch.observe([rejected(first_seq=41, last_seq=130, used=255 * MIB)])
    assert evicted("bytes") == by_bytes + 30
    # Far from full, the head's advance is the age limit at work.
    watch.observe([rejected(first_seq=45, last_seq=130, used=10 * MIB)])
    assert evicted("age") == by_age + 4


def test_a_backlog_above_the_alert_is_reported_while_it_lasts() -> None:
    watch = StreamWatch(Settings(_env_file=None, namespace="t1"))
    full = StreamUsage(
        name="t1_READINGS",
        retention_ok=True,
        messages=5,
        bytes=900 * MIB,
        max_bytes=1024 * MIB,
        first_seq=1,
        last_seq=5,
    )
    [problem] = watch.observe([full])
    assert problem.startswith("t1_READINGS at 88% ")
    assert metrics.STREAM_USAGE_RATIO.labels("t1_READINGS")._value.get() == 900 / 1024
    assert watch.observe([dataclasses.replace(full, bytes=0)]) == []
