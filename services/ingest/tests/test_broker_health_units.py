"""The broker's drop counter: rises between observations, across ingest and broker restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_ingest.broker_health import (
    START_TIME_TOLERANCE,
    Sample,
    advance,
    mark_unavailable,
    parse_dropped,
    parse_uptime,
    rise_between,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BROKER = "127.0.0.1:1883"


def sample(dropped: int, uptime_s: int, at_s: float) -> Sample:
    return Sample(dropped=dropped, uptime_s=uptime_s, observed_at=T0 + timedelta(seconds=at_s))


def test_a_rise_seen_after_ingest_was_away_is_the_difference_and_a_restart_makes_all_new() -> None:
    # Hand example: the broker ran 600 s with 5 dropped; ingest went away for 5 minutes while
    # a burst of 3,000 overflowed its 1,000-message queue; back, the counter reads 2,005.
    before = sample(5, 600, 0)
    after = sample(2005, 900, 300)
    first, record = advance(None, BROKER, before)
    assert first.first and first.messages == 0 and record.last_rise_at is None
    rise, record = advance(record, BROKER, after)
    assert (rise.messages, rise.broker_restarted) == (2000, False)
    assert record.last_rise == 2000 and record.last_rise_at == after.observed_at
    # Then the broker restarts (its counter starts at 0 again) and drops 12: all 12 are new.
    restarted = sample(12, 30, 1000)
    rise, record = advance(record, BROKER, restarted)
    assert (rise.messages, rise.broker_restarted) == (12, True)
    assert record.rises_total == 2012 and record.dropped == 12 and record.uptime_s == 30


def test_a_restart_is_seen_even_when_the_new_uptime_is_already_longer() -> None:
    # Seen at uptime 600 s; an hour later the broker has been up 1,200 s: it started again.
    rise = rise_between(sample(50, 600, 0), sample(7, 1200, 3600))
    assert (rise.messages, rise.broker_restarted) == (7, True)
    # A counter that went down can only mean a restart.
    rise = rise_between(sample(50, 600, 0), sample(40, 700, 100))
    assert (rise.messages, rise.broker_restarted) == (40, True)


def test_a_retained_value_a_few_seconds_old_is_not_a_restart() -> None:
    # Retained $SYS values arrive up to one sys_interval (10 s) late: the start seems later.
    rise = rise_between(sample(5, 600, 0), sample(5, 610, 20))
    assert (rise.messages, rise.broker_restarted) == (0, False)


def test_no_rise_keeps_the_last_rise_for_the_alarm_window() -> None:
    _, record = advance(None, BROKER, sample(0, 100, 0))
    _, record = advance(record, BROKER, sample(10, 200, 100))
    rise, record = advance(record, BROKER, sample(10, 300, 200))
    assert rise.messages == 0
    assert record.last_rise == 10 and record.last_rise_at == T0 + timedelta(seconds=100)


def test_a_broker_without_counters_keeps_the_last_baseline() -> None:
    _, record = advance(None, BROKER, sample(3, 100, 0))
    gone = mark_unavailable(record, BROKER, T0 + timedelta(hours=1))
    assert not gone.available and gone.dropped == 3 and gone.uptime_s == 100
    rise, back = advance(gone, BROKER, sample(9, 4000, 3900))
    assert rise.messages == 6 and back.available
    assert not mark_unavailable(None, BROKER, T0).available


def test_mosquitto_payloads_are_parsed_and_others_refused() -> None:
    assert parse_dropped(b"2000") == 2000
    assert parse_uptime(b"123 seconds") == 123
    for bad in (b"", b"-1", b"many"):
        with pytest.raises(ValueError):
            parse_dropped(bad)
    for bad in (b"12 minutes", b"-3 seconds", b"x seconds"):
        with pytest.raises(ValueError):
            parse_uptime(bad)


# One broker life: the counter at each observation (never down) and the uptime steps between.
# Every observed uptime exceeds the start-time tolerance so that any restart after it shows.
def cumulative(steps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(new drops, seconds) steps -> (counter, seconds) observations."""
    counter, out = 0, []
    for drops, seconds in steps:
        counter += drops
        out.append((counter, seconds))
    return out


step = st.tuples(st.integers(0, 5_000), st.integers(1, 600))
life = st.lists(step, min_size=1, max_size=6).map(cumulative)


def observe_lives(lives: list[list[tuple[int, int]]], gaps_s: list[int]) -> list[Sample]:
    """Samples of consecutive broker lives; each restart comes ``gap`` seconds after the last."""
    samples: list[Sample] = []
    now = T0
    for number, observations in enumerate(lives):
        if number:
            now += timedelta(seconds=gaps_s[number % len(gaps_s)])
        started = now
        uptime_s = int(START_TIME_TOLERANCE.total_seconds())
        for dropped, step_s in observations:
            uptime_s += step_s
            samples.append(Sample(dropped, uptime_s, started + timedelta(seconds=uptime_s)))
        now = samples[-1].observed_at
    return samples


@settings(deadline=None)
@given(observations=life)
def test_a_monotone_counter_rises_by_exactly_its_total_increase(
    observations: list[tuple[int, int]],
) -> None:
    samples = observe_lives([observations], [1])
    record = None
    rises = []
    for s in samples:
        rise, record = advance(record, BROKER, s)
        assert rise.messages >= 0 and not rise.broker_restarted
        rises.append(rise.messages)
    assert sum(rises) == samples[-1].dropped - samples[0].dropped


@settings(deadline=None)
@given(
    lives=st.lists(life, min_size=1, max_size=5),
    gaps_s=st.lists(st.integers(1, 30 * 24 * 3600), min_size=1, max_size=5),
)
def test_across_broker_restarts_nothing_is_lost_or_counted_twice(
    lives: list[list[tuple[int, int]]], gaps_s: list[int]
) -> None:
    samples = observe_lives(lives, gaps_s)
    record = None
    restarts = 0
    for s in samples:
        rise, record = advance(record, BROKER, s)
        assert rise.messages >= 0
        restarts += rise.broker_restarted
    assert record is not None
    # Each later life counts from 0; the first is counted from where we first saw it.
    expected = sum(obs[-1][0] for obs in lives) - lives[0][0][0]
    assert record.rises_total == expected
    assert restarts == len(lives) - 1
