"""End-to-end benchmark: powerflow's pipeline next to the original one-INSERT-per-message design.

Prints, from one run on this machine: sustained throughput (readings/s from the first
publish until the last row is committed) and p50/p99 latency from publish to the database
at a fixed 2,000 readings/s, for both designs, with the CPU each process used.
Load comes from Debian's ``mosquitto_pub -l`` (QoS 1), at most 60,000 messages a process.
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
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from powerflow.broker import Broker, account_url, free_port
from powerflow_common.broker_admin import new_password
from powerflow_common.db.engine import drop_database, ensure_database, migrate
from powerflow_common.enrolment import enroll_device
from powerflow_common.jetstream import drop_namespace
from powerflow_common.settings import load_settings

HERE = Path(__file__).resolve().parent
SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
NATS_URL = os.environ.get("POWERFLOW_BENCH_NATS_URL", "nats://127.0.0.1:4222")
MAX_PER_PUBLISHER = 60_000  # QoS 1 packet ids wrap at 65,535
BENCH_DEVICES = 100  # devices per prefix (backlog_lines, paced_latency)


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
    engine = create_engine(db_url)
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


def enrol_legacy(url: str, prefixes: Iterable[str], devices: int = 100) -> None:
    """Enrol the bench's devices as an operator would for the prototype's shared topic:
    admitted and allowed on ``power/measurement`` (the writer refuses anyone else there)."""
    engine = create_engine(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (code, payload_format, meter_role, bidirectional,"
                    " first_seen_at, last_seen_at, admitted_at, admitted_by, legacy_topic)"
                    " VALUES (:code, 'original', 'standalone', 0, :now, :now, :now, 'bench', 1)"
                    " ON DUPLICATE KEY UPDATE legacy_topic = 1"
                ),
                [{"code": f"{p}-{d:03d}", "now": now} for p in prefixes for d in range(devices)],
            )
    finally:
        engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(name: str) -> int | None:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


class Rows:
    """Counts and latencies of the rows a design stored."""

    def __init__(self, url: str, table: str, ts_col: str, stored_col: str, code_col: str) -> None:
        self.engine = create_engine(url)
        self.table, self.ts_col, self.stored_col, self.code_col = (
            table,
            ts_col,
            stored_col,
            code_col,
        )
        self.join = " JOIN devices d ON d.id = t.device_id" if table == "readings" else ""

    def count(self, prefix: str) -> int:
        code = "d.code" if self.join else f"t.{self.code_col}"
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(f"SELECT COUNT(*) FROM {self.table} t{self.join} WHERE {code} LIKE :p"),
                    {"p": f"{prefix}-%"},
                ).scalar_one()
            )

    def latencies_ms(self, prefix: str) -> list[float]:
        code = "d.code" if self.join else f"t.{self.code_col}"
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    text(
                        f"SELECT TIMESTAMPDIFF(MICROSECOND, t.{self.ts_col}, t.{self.stored_col})"
                        f" FROM {self.table} t{self.join} WHERE {code} LIKE :p"
                    ),
                    {"p": f"{prefix}-%"},
                )
                .scalars()
                .all()
            )
        return [r / 1000 for r in rows]


def wait_rows(rows: Rows, prefix: str, expected: int, timeout_s: float) -> float:
    """Seconds until ``expected`` rows are stored (polled every 20 ms), or raise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rows.count(prefix) >= expected:
            return time.monotonic()
        time.sleep(0.02)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="readings, throughput run")
    parser.add_argument("--baseline-count", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2_000.0, help="readings/s, latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    args = parser.parse_args()
    if shutil.which("mosquitto_pub") is None:
        sys.exit("mosquitto_pub is missing: apt-get install mosquitto-clients")

    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    db_url = f"{SERVER}/pf_bench_{tag}"
    orig_url = f"{SERVER}/pf_bench_orig_{tag}"
    migrate(db_url)
    ensure_database(orig_url)
    # The project's broker in its lab mode: anonymous publishers (many `mosquitto_pub` at
    # once, each with a client id of its own) on device topics; ingest logs in as itself.
    broker = Broker(free_port(), work / "mosquitto", namespace=f"bench{tag}", open_lab=True)
    broker.start()
    enroll_bench_devices(db_url, broker, ("tp", "lat"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERFLOW_")}
    env.update(
        POWERFLOW_DATABASE_URL=db_url,
        POWERFLOW_NATS_URL=NATS_URL,
        POWERFLOW_NAMESPACE=f"bench{tag}",
        POWERFLOW_MQTT_URL=broker.ingest_url(),
        POWERFLOW_INGEST_METRICS_PORT="0",
        POWERFLOW_WRITER_METRICS_PORT="0",
        POWERFLOW_LOG_LEVEL="warning",
    )
    exe = [sys.executable, "-m", "powerflow.cli"]
    results: dict[str, dict[str, float]] = {}
    children: list[subprocess.Popen[bytes]] = []
    try:
        ingest = start(
            [*exe, "ingest"], {**env, "POWERFLOW_LOG_LEVEL": "info"}, work / "ingest.log"
        )
        writer = start([*exe, "writer"], env, work / "writer.log")
        children += [ingest, writer]
        wait_logged(work / "ingest.log", "mqtt_subscribed")
        time.sleep(1.0)  # the writer creates its consumer at start-up
        procs = {"ingest": ingest.pid, "writer": writer.pid, "mosquitto": broker.process.pid}  # type: ignore[union-attr]
        for name in ("nats-server", "mariadbd"):
            pid = pid_of(name)
            if pid:
                procs[name] = pid
        ours = Rows(db_url, "readings", "ts", "received_at", "")
        enrol_legacy(db_url, ("tp", "lat"))
        print(f"powerflow: throughput with {args.count:,} readings ...", flush=True)
        results["powerflow_tp"] = throughput(broker.port, ours, "tp", args.count, procs)
        print(f"powerflow: latency at {args.rate:,.0f}/s for {args.seconds:.0f} s ...", flush=True)
        results["powerflow_lat"] = paced_latency(
            broker.port, ours, "lat", args.rate, args.seconds, 60
        )
        for child in (ingest, writer):
            child.terminate()
            child.wait(15)

        orig_db = make_url(orig_url)
        original = start(
            [
                sys.executable,
                str(HERE / "original_design.py"),
                original_subscriber(broker),
                orig_db.host or "127.0.0.1",
                str(orig_db.port or 3306),
                orig_db.database or "",
            ],
            env,
            work / "original.log",
        )
        children.append(original)
        wait_logged(work / "original.log", "ready")
        time.sleep(0.5)
        theirs = Rows(orig_url, "power_readings", "timestamp", "created_at", "device_code")
        procs_orig = {
            k: v for k, v in procs.items() if k not in ("ingest", "writer", "nats-server")
        }
        procs_orig["original"] = original.pid
        print(f"original: throughput with {args.baseline_count:,} readings ...", flush=True)
        results["original_tp"] = throughput(
            broker.port, theirs, "tp", args.baseline_count, procs_orig
        )
        print(f"original: latency at {args.rate:,.0f}/s for {args.seconds:.0f} s ...", flush=True)
        results["original_lat"] = paced_latency(
            broker.port, theirs, "lat", args.rate, args.seconds, 300
        )
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(15)
        broker.stop()
        drop_namespace(load_settings(nats_url=NATS_URL, namespace=f"bench{tag}"))
        drop_database(db_url)
        drop_database(orig_url)
    report(results, args)


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    ours_tp, orig_tp = results["powerflow_tp"], results["original_tp"]
    ours_lat, orig_lat = results["powerflow_lat"], results["original_lat"]
    print()
    print(f"{'measure':44} {'powerflow':>12} {'original':>12} {'ratio':>8}")
    rows = [
        ("sustained throughput, readings/s", ours_tp["readings_per_s"], orig_tp["readings_per_s"]),
        (f"latency p50 at {args.rate:,.0f}/s, ms", ours_lat["p50_ms"], orig_lat["p50_ms"]),
        (f"latency p99 at {args.rate:,.0f}/s, ms", ours_lat["p99_ms"], orig_lat["p99_ms"]),
        (f"latency max at {args.rate:,.0f}/s, ms", ours_lat["max_ms"], orig_lat["max_ms"]),
    ]
    for name, a, b in rows:
        print(f"{name:44} {a:12,.1f} {b:12,.1f} {a / b if b else float('nan'):8.2f}")
    print()
    print("CPU during the throughput run (cores busy, 1.0 = one core):")
    for key in sorted(k for k in ours_tp if k.startswith("cpu_")):
        other = orig_tp.get(key)
        print(
            f"  {key[4:]:14} powerflow {ours_tp[key]:5.2f}"
            + (f"   original {other:5.2f}" if other is not None else "")
        )
    if "cpu_original" in orig_tp:
        print(f"  {'original':14} {'':15}   original {orig_tp['cpu_original']:5.2f}")


if __name__ == "__main__":
    main()
