"""Micro-benchmark: the cost of content-derived message ids against the old keys-only ones.

Prints, side by side from one run, the time to compute the ``Nats-Msg-Id`` of a 500-reading
batch (ingest's default batch) with the former (device, ts)-keys hash and with the current
hash of every field (``powerflow_common.msgids``), their ratio and readings/s, and the bytes
one reading takes in a READINGS message (for the stream-size arithmetic in
docs/operations.md). Pure CPU: no server needed.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from powerflow_common.msgids import readings_msg_id
from powerflow_common.wire import Reading, ReadingBatch, json_encoder

BATCH = 500  # ingest_batch_max_messages' default
ROUNDS = 7
BATCHES_PER_ROUND = 200


def keys_only_msg_id(readings: Sequence[Reading]) -> str:
    """The id older ingests used: (device, ts) keys only (lost ESPHome energy)."""
    digest = hashlib.sha256()
    for code, ts in sorted({r.key for r in readings}):
        digest.update(f"{code}\x1f{ts.isoformat()}\x1e".encode())
    return f"r-{digest.hexdigest()}"


def batch(offset: int) -> list[Reading]:
    """500 original-format readings of 100 devices, 5 s apart: what a busy ingest batches."""
    start = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=offset)
    return [
        Reading(
            device_code=str(1000 + i % 100),
            ts=start + timedelta(seconds=5 * (i // 100)),
            power_w=100.0 + i * 0.25,
            temperature_c=22.5,
            humidity_pct=50.1,
            brightness_lux=300.0 + i % 100,
        )
        for i in range(BATCH)
    ]


def per_batch_s(id_of: Callable[[Sequence[Reading]], str], batches: list[list[Reading]]) -> float:
    """Median over rounds of the mean time per batch."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for readings in batches:
            id_of(readings)
        rounds.append((time.perf_counter() - started) / len(batches))
    return statistics.median(rounds)


def main() -> None:
    batches = [batch(i) for i in range(BATCHES_PER_ROUND)]
    old_s = per_batch_s(keys_only_msg_id, batches)
    new_s = per_batch_s(readings_msg_id, batches)
    print(f"Nats-Msg-Id of a {BATCH}-reading batch (median of {ROUNDS} rounds):")
    print(f"{'id':<22}{'us/batch':>12}{'readings/s':>16}")
    for name, seconds in (("keys only (before)", old_s), ("whole content (now)", new_s)):
        print(f"{name:<22}{seconds * 1e6:>12.0f}{BATCH / seconds:>16,.0f}")
    print(f"ratio now/before: {new_s / old_s:.2f}")
    body = json_encoder.encode(ReadingBatch(readings=batches[0], ingested_at=datetime.now(UTC)))
    print(f"READINGS payload per reading: {len(body) / BATCH:.0f} bytes (batch of {BATCH})")


if __name__ == "__main__":
    main()
