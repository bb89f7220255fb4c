"""Stream rules without a server: configurations, the full-stream error, usage problems."""

from __future__ import annotations

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DiscardPolicy, RetentionPolicy
from nats.js.errors import APIError, BadRequestError, ServiceUnavailableError

from powerflow_common.jetstream import (
    StreamUsage,
    is_stream_full,
    needs_migration,
    stream_configs,
    usage_problems,
)
from powerflow_common.settings import Settings

MIB = 1024 * 1024


def usage(name: str, used: int, limit: int, *, retention_ok: bool = True) -> StreamUsage:
    return StreamUsage(
        name=name,
        retention_ok=retention_ok,
        messages=1,
        bytes=used,
        max_bytes=limit,
        first_seq=1,
        last_seq=1,
    )


def test_readings_and_persisted_are_bounded_work_queues_rejected_drops_its_oldest() -> None:
    readings, rejected, persisted, rollups = stream_configs(Settings(_env_file=None))
    for work in (readings, persisted):
        assert work.retention == RetentionPolicy.WORK_QUEUE
        assert work.discard == DiscardPolicy.NEW
        assert work.max_age == 0  # an age limit would only delete an unread backlog
    assert (readings.max_bytes, persisted.max_bytes) == (1024 * MIB, 256 * MIB)
    assert rejected.retention == RetentionPolicy.LIMITS
    assert rejected.discard == DiscardPolicy.OLD
    assert rejected.max_bytes == 256 * MIB
    # ROLLUPS (alerts) is a record too: an aggregator is never held up by a missing reader.
    assert rollups.retention == RetentionPolicy.LIMITS
    assert rollups.discard == DiscardPolicy.OLD
    assert (rollups.max_bytes, rollups.max_age) == (128 * MIB, 2 * 24 * 3600.0)


def test_only_a_refusal_for_space_counts_as_a_full_stream() -> None:
    # What nats-server 2.9.10 answered a discard-new stream at its max_bytes (measured).
    assert is_stream_full(
        ServiceUnavailableError(code=503, err_code=10077, description="maximum bytes exceeded")
    )
    assert is_stream_full(APIError(code=500, err_code=10047, description="insufficient storage"))
    assert not is_stream_full(
        BadRequestError(code=400, err_code=10109, description="invalid operation on sealed stream")
    )
    assert not is_stream_full(NatsTimeoutError())


def test_a_stream_whose_retention_changed_needs_migration_the_server_refuses_it_in_place() -> None:
    [readings, rejected, *_] = stream_configs(Settings(_env_file=None))
    old = stream_configs(Settings(_env_file=None))[0]
    old.retention = "limits"  # type: ignore[assignment]  # as nats-py hands it back
    assert needs_migration(old, readings)
    assert not needs_migration(readings, readings)
    assert not needs_migration(rejected, rejected)


def test_usage_at_the_alert_ratio_is_a_problem_but_not_for_a_discard_old_stream() -> None:
    # Hand-computed: 820 MiB of 1 GiB is 80.1 %, at or above the 0.8 alert.
    problems = usage_problems(
        [usage("READINGS", 820 * MIB, 1024 * MIB), usage("REJECTED", 256 * MIB, 256 * MIB)],
        0.8,
        frozenset({"REJECTED"}),
    )
    assert len(problems) == 1 and problems[0].startswith("READINGS at 80% ")
    assert usage_problems([usage("READINGS", 810 * MIB, 1024 * MIB)], 0.8, frozenset()) == []


def test_a_stream_to_migrate_is_a_problem_until_powerflow_streams_ran() -> None:
    [problem] = usage_problems([usage("READINGS", 0, -1, retention_ok=False)], 0.8, frozenset())
    assert "powerflow streams" in problem
