"""NATS as a cluster: three nats-servers as one JetStream cluster, streams at R3.

The real pipeline (ingest from the test's own Mosquitto, the writer to the test's database)
runs on the cluster with readings flowing at up to 2,000/s while nodes are killed with
SIGKILL: the stream's leader, then another node (one down at a time: a quorum remains), and
two at once (no quorum: ingest holds the readings unacknowledged at the broker). Every
reading the broker acknowledged is stored exactly once in every case.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PeerInfo, StreamConfig
from nats.js.errors import BadRequestError
from pf_cluster import ClusterNode, NatsCluster, PacedPublisher, nats_cluster
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text
from structlog.testing import capture_logs

from conftest import service_env
from pf_testing import FleetBroker, Service, admit, count_rows, wait_for
from powerflow.broker import free_port
from powerflow_common.errors import ConfigurationError
from powerflow_common.jetstream import (
    StreamUsage,
    _ensure_bucket,
    bucket_configs,
    close_nats,
    connect_nats,
    ensure_streams,
    peer_unreachable,
    quorum,
    replica_problems,
    stream_configs,
    stream_problems,
    until_answered,
)
from powerflow_common.names import kv_stream
from powerflow_common.settings import Settings, redact_url

REPLICAS = 3
DEVICES = 50
# Readings a second from the publisher: the 2,000/s. Not asserted as a rate: on two
# cores shared with other test runs the pipeline may fall behind, and then only takes longer.
RATE_PER_S = 2_000.0
# Rows that must be stored after a disruption to call the pipeline flowing again.
PROGRESS_ROWS = 3_000
# Readings ingest must hold on top of what it held before, twice: below the Receive Maximum
# (10,000 unacknowledged, where the broker stops sending) even after a slow first look.
HELD_MORE = 1_000
# Deadlines, not waits: an election takes a few seconds; the rest is a busy machine.
FLOW_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 240.0


# --- Rules without a server -------------------------------------------------------------


def test_every_stream_and_bucket_gets_the_configured_replicas() -> None:
    settings = Settings(_env_file=None, stream_replicas=REPLICAS)
    assert [c.num_replicas for c in stream_configs(settings)] == [REPLICAS] * 4
    assert [b.replicas for b in bucket_configs(settings)] == [REPLICAS]
    default = Settings(_env_file=None)
    assert {c.num_replicas for c in stream_configs(default)} == {1}


@pytest.mark.parametrize("replicas", [0, 6])
def test_replicas_outside_what_nats_supports_are_refused(replicas: int) -> None:
    with pytest.raises(ValueError, match="stream_replicas"):
        Settings(_env_file=None, stream_replicas=replicas)


def usage(replicas: int, wanted: int, offline: int) -> StreamUsage:
    return StreamUsage(
        name="READINGS",
        retention_ok=True,
        messages=0,
        bytes=0,
        max_bytes=0,
        first_seq=0,
        last_seq=0,
        replicas=replicas,
        replicas_wanted=wanted,
        replicas_offline=offline,
    )


def test_replica_problems_say_what_one_more_failure_would_do() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert replica_problems(usage(3, 3, 0)) == []
    assert replica_problems(usage(1, 1, 0)) == []
    [one_down] = replica_problems(usage(3, 3, 1))
    assert "1 of 3 replicas offline" in one_down
    assert "0 more node(s) down stops publishes" in one_down
    [two_down] = replica_problems(usage(3, 3, 2))
    assert "no quorum: publishes are held" in two_down
    [refused] = replica_problems(usage(1, 3, 0))
    assert "POWERFLOW_STREAM_REPLICAS=3" in refused and "has 1 replica" in refused


def test_a_killed_follower_counts_as_offline_before_the_server_says_so() -> None:
    second = 1_000_000_000
    assert not peer_unreachable(PeerInfo(name="n2", current=True, active=second // 2))
    # Lagging under load but heard from: still a replica.
    assert not peer_unreachable(PeerInfo(name="n2", current=False, active=2 * second))
    assert peer_unreachable(PeerInfo(name="n2", current=False, active=30 * second))
    assert peer_unreachable(PeerInfo(name="n2", current=False, offline=True, active=0))
    # What a new leader says of the killed one before it: behind, never heard from.
    assert peer_unreachable(PeerInfo(name="n2", current=False, active=0))


def test_a_server_list_is_redacted_whole() -> None:
    servers = "nats://api:s3cret@n1:4222,nats://api:s3cret@n2:4222"
    assert redact_url(servers) == "nats://api:***@n1:4222,nats://api:***@n2:4222"
    assert Settings(_env_file=None, nats_url=servers).nats_servers == servers.split(",")


# --- A single server: more than one replica is refused loudly ----------------------------


@pytest.mark.parametrize("kind", ["stream", "bucket"])
def test_a_single_server_asked_for_replicas_refuses_to_start_and_names_the_fix(
    settings: Settings, kind: str
) -> None:
    """Streams and key-value buckets share one rule: refused with what to set."""
    wanted = settings.model_copy(update={"stream_replicas": REPLICAS})
    first_stream = stream_configs(wanted)[0].name or ""
    (bucket,) = bucket_configs(wanted)

    async def create(js: JetStreamContext) -> None:
        if kind == "stream":
            await ensure_streams(js, wanted)  # the streams first, so the first stream refuses
        else:
            await _ensure_bucket(js, bucket)

    async def run() -> None:
        nc = await connect_nats(wanted, "pf-test-replicas")
        try:
            with pytest.raises(ConfigurationError) as refused:
                await create(nc.jetstream())
        finally:
            await close_nats(nc)
        named = first_stream if kind == "stream" else f"the key-value bucket {bucket.bucket}"
        assert f"cannot create {named} with" in str(refused.value)
        assert "POWERFLOW_STREAM_REPLICAS=1" in str(refused.value)
        assert "not a JetStream cluster" in str(refused.value)

    asyncio.run(run())


def test_an_existing_stream_the_server_cannot_replicate_is_kept_and_reported(
    settings: Settings,
) -> None:
    wanted = settings.model_copy(update={"stream_replicas": REPLICAS})

    async def run() -> list[str]:
        nc = await connect_nats(settings, "pf-test-replicas")
        try:
            js = nc.jetstream()
            await ensure_streams(js, settings)  # at R1, as a single server has them
            with capture_logs() as logs:
                await ensure_streams(js, wanted)  # kept at R1, limits still applied
            refused = [e for e in logs if e["event"] == "stream_replicas_not_changed"]
            assert {e["stream"] for e in refused} == {c.name for c in stream_configs(wanted)} | {
                kv_stream(b.bucket) for b in bucket_configs(wanted)
            }
            assert all("POWERFLOW_STREAM_REPLICAS=1" in e["fix"] for e in refused)
            return await stream_problems(js, wanted)
        finally:
            await close_nats(nc)

    problems = asyncio.run(run())
    assert len(problems) == len(stream_configs(wanted))
    assert all("has 1 replica(s), POWERFLOW_STREAM_REPLICAS=3" in p for p in problems)


# --- The cluster ------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nodes of this test's own; every process killed at the end, whatever happened."""
    with nats_cluster(tmp_path / "nats") as started:
        yield started


@pytest.fixture
def cluster_settings(settings: Settings, cluster: NatsCluster) -> Settings:
    """The test's settings on the cluster: the comma list of its nodes, streams at R3."""
    return settings.model_copy(update={"nats_url": cluster.url, "stream_replicas": REPLICAS})


def stream_replicas(settings: Settings) -> dict[str, int]:
    """Each stream's (and bucket's) replicas as the cluster reports them."""

    async def ask() -> dict[str, int]:
        nc = await connect_nats(settings, "pf-test-replicas")
        try:
            js = nc.jetstream()
            names = [c.name or "" for c in stream_configs(settings)]
            names += [kv_stream(b.bucket) for b in bucket_configs(settings)]
            return {n: (await js.stream_info(n)).config.num_replicas or 1 for n in names}
        finally:
            await close_nats(nc)

    return asyncio.run(ask())


def test_streams_of_an_older_single_node_setup_move_to_r3_in_place(
    cluster: NatsCluster, cluster_settings: Settings
) -> None:
    single = cluster_settings.model_copy(update={"stream_replicas": 1})
    readings = cluster_settings.names.readings_stream

    async def setup() -> None:
        nc = await connect_nats(single, "pf-test-replicas")
        try:
            js = nc.jetstream()
            await ensure_streams(js, single)
            for i in range(100):
                await js.publish(cluster_settings.names.readings_subject("t"), b"%d" % i)
        finally:
            await close_nats(nc)

    asyncio.run(setup())
    assert set(stream_replicas(single).values()) == {1}

    async def upgrade() -> None:
        nc = await connect_nats(cluster_settings, "pf-test-replicas")
        try:
            with capture_logs() as logs:
                await ensure_streams(nc.jetstream(), cluster_settings)
        finally:
            await close_nats(nc)
        changed = [e for e in logs if e["event"] == "stream_replicas_changed"]
        # every stream (ROLLUPS, of the alerts, among them) and the broker-health bucket
        assert len(changed) == len(stream_configs(cluster_settings)) + 1
        assert not [e for e in logs if e["event"] == "stream_replicas_not_changed"]

    asyncio.run(upgrade())
    assert set(stream_replicas(cluster_settings).values()) == {REPLICAS}
    cluster.wait_replicas_current(readings, REPLICAS)

    async def kept() -> int:
        nc = await connect_nats(cluster_settings, "pf-test-replicas")
        try:
            return (await nc.jetstream().stream_info(readings)).state.messages
        finally:
            await close_nats(nc)

    assert asyncio.run(kept()) == 100  # the backlog was copied, not lost


@pytest.fixture
def pipeline(
    cluster_settings: Settings, broker: FleetBroker, tmp_path: Path
) -> Iterator[tuple[dict[str, Service], int]]:
    """ingest and writer on the cluster (started, ready), and ingest's metrics port."""
    env = service_env(cluster_settings, POWERFLOW_STREAM_REPLICAS=str(REPLICAS))
    metrics_port = free_port()
    procs = {
        "ingest": Service(
            "ingest", {**env, "POWERFLOW_INGEST_METRICS_PORT": str(metrics_port)}, tmp_path
        ),
        "writer": Service("writer", env, tmp_path),
    }
    try:
        procs["writer"].start()
        procs["ingest"].start()
        procs["ingest"].wait_logged("mqtt_subscribed")
        procs["writer"].wait_logged("writer_starting")
        yield procs, metrics_port
    finally:
        for proc in procs.values():
            proc.stop()


def ingest_metrics(port: int) -> dict[str, float]:
    """ingest's unlabelled Prometheus samples (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        body = answer.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if not sample.labels
    }


def distinct_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM (SELECT DISTINCT device_id, ts FROM readings) AS k")
            ).scalar_one()
        )


def rejected_count(settings: Settings) -> int:
    async def ask() -> int:
        nc = await connect_nats(settings, "pf-test-rejected")
        try:
            info = await nc.jetstream().stream_info(settings.names.rejected_stream)
            return info.state.messages
        finally:
            await close_nats(nc)

    return asyncio.run(ask())


def wait_flowing(engine: Engine, what: str) -> None:
    """Wait until PROGRESS_ROWS more readings are stored than now."""
    before = count_rows(engine)
    wait_for(
        lambda: count_rows(engine) >= before + PROGRESS_ROWS,
        FLOW_TIMEOUT_S,
        interval_s=0.2,
        what=what,
    )


def start_load(broker: FleetBroker, engine: Engine) -> PacedPublisher:
    # Readings of the past hours (never in the future at the rate and length of the test).
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    publisher = PacedPublisher(
        broker.fleet_url, devices=DEVICES, rate_per_s=RATE_PER_S, start=start
    )
    admit(engine, *publisher.codes())
    return publisher.start()


def assert_stored_exactly_once(engine: Engine, published: int, settings: Settings) -> None:
    wait_for(
        lambda: count_rows(engine) >= published,
        DRAIN_TIMEOUT_S,
        interval_s=0.5,
        what=f"all {published} readings stored",
    )
    assert count_rows(engine) == published
    assert distinct_rows(engine) == published
    assert rejected_count(settings) == 0  # nothing dead-lettered on the way


@contextmanager
def load_on_cluster(
    cluster: NatsCluster, settings: Settings, broker: FleetBroker, engine: Engine
) -> Iterator[None]:
    """Readings flowing through the cluster's R3 streams while the body runs; after it, every
    reading the broker acknowledged is stored exactly once (what each scenario must show)."""
    cluster.wait_replicas_current(settings.names.readings_stream, REPLICAS)
    publisher = start_load(broker, engine)
    try:
        wait_flowing(engine, "readings flowing on the cluster")
        yield
    finally:
        published = publisher.stop()
    assert_stored_exactly_once(engine, published, settings)


def bring_back(cluster: NatsCluster, node: ClusterNode, settings: Settings, engine: Engine) -> None:
    """Restart a killed node and wait until its stream copies caught up and readings flow."""
    node.start()
    cluster.wait_meta_leader()
    cluster.wait_replicas_current(settings.names.readings_stream, REPLICAS)
    wait_flowing(engine, f"readings flowing with {node.name} back")


def replica_offline_reported(settings: Settings) -> list[str]:
    async def ask() -> list[str]:
        nc = await connect_nats(settings, "pf-test-problems")
        try:
            return [p for p in await stream_problems(nc.jetstream(), settings) if "offline" in p]
        except Exception:
            return []  # an election in progress: asked again
        finally:
            await close_nats(nc)

    return asyncio.run(ask())


def other_than(cluster: NatsCluster, *nodes: ClusterNode) -> ClusterNode:
    return next(n for n in cluster.nodes if n not in nodes)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_leader_killed_then_another_node_every_reading_stored_once(
    cluster: NatsCluster,
    cluster_settings: Settings,
    pipeline: tuple[dict[str, Service], int],
    broker: FleetBroker,
    engine: Engine,
) -> None:
    services, _ = pipeline
    readings = cluster_settings.names.readings_stream
    with load_on_cluster(cluster, cluster_settings, broker, engine):
        assert set(stream_replicas(cluster_settings).values()) == {REPLICAS}
        first = cluster.stream_leader(readings)
        first.kill9()
        wait_flowing(engine, f"readings flowing after the leader {first.name} was killed")
        problems = wait_for(
            lambda: replica_offline_reported(cluster_settings),
            FLOW_TIMEOUT_S,
            what="the offline replica on /readyz's stream check",
        )
        assert "1 of 3 replicas offline" in problems[0]
        bring_back(cluster, first, cluster_settings, engine)

        # Another node: the stream's leader now, unless the first one leads again.
        leader = cluster.stream_leader(readings)
        second = leader if leader is not first else other_than(cluster, first)
        second.kill9()
        wait_flowing(engine, f"readings flowing after {second.name} was killed")
        bring_back(cluster, second, cluster_settings, engine)

    assert services["ingest"].alive and services["writer"].alive


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_of_three_down_ingest_holds_then_resumes_every_reading_stored_once(
    cluster: NatsCluster,
    cluster_settings: Settings,
    pipeline: tuple[dict[str, Service], int],
    broker: FleetBroker,
    engine: Engine,
) -> None:
    services, metrics_port = pipeline
    readings = cluster_settings.names.readings_stream
    with load_on_cluster(cluster, cluster_settings, broker, engine):
        leader = cluster.stream_leader(readings)
        follower = other_than(cluster, leader)
        leader.kill9()
        follower.kill9()

        # No quorum: every publish fails, and ingest keeps what it received unacknowledged.
        held = wait_for(
            lambda: (
                (m := ingest_metrics(metrics_port))["powerflow_ingest_nats_connected"] == 0
                and m["powerflow_ingest_unacked_messages"] > 0
                and m
            ),
            FLOW_TIMEOUT_S,
            what="ingest holding readings (publishes failing)",
        )

        def holding_more_than(before: dict[str, float], more: int) -> dict[str, float] | None:
            now = ingest_metrics(metrics_port)
            grown = (
                now["powerflow_ingest_unacked_messages"]
                - before["powerflow_ingest_unacked_messages"]
            )
            return now if grown >= more else None

        # The baseline a moment later: an ack already on its way when the nodes died is in.
        baseline = wait_for(
            lambda: holding_more_than(held, HELD_MORE),
            FLOW_TIMEOUT_S,
            what="ingest holding readings while there is no quorum",
        )
        # Readings keep arriving and stay unacknowledged; JetStream acknowledges none of them.
        still = wait_for(
            lambda: holding_more_than(baseline, HELD_MORE),
            FLOW_TIMEOUT_S,
            what="ingest holding more readings while there is no quorum",
        )
        assert (
            still["powerflow_ingest_readings_published_total"]
            == baseline["powerflow_ingest_readings_published_total"]
        )
        assert still["powerflow_ingest_nats_connected"] == 0
        assert still["powerflow_ingest_publish_failures_total"] > 0
        assert services["ingest"].alive and services["writer"].alive
        assert "jetstream_publish_failed" in services["ingest"].log_text()

        follower.start()  # two of three: a quorum again
        cluster.wait_meta_leader()
        wait_flowing(engine, "readings flowing once one node returned")
        wait_for(
            lambda: ingest_metrics(metrics_port)["powerflow_ingest_nats_connected"] == 1,
            FLOW_TIMEOUT_S,
            what="ingest's publishes succeeding again",
        )
        leader.start()
        cluster.wait_meta_leader()

    assert services["ingest"].alive and services["writer"].alive
    assert "jetstream_publish_recovered" in services["ingest"].log_text()
    cluster.wait_replicas_current(readings, REPLICAS)


def test_a_fresh_cluster_stream_config_is_r3(
    cluster: NatsCluster, cluster_settings: Settings
) -> None:
    """ensure_streams on an empty cluster creates every stream and the bucket at R3."""

    async def run() -> StreamConfig:
        nc = await connect_nats(cluster_settings, "pf-test-replicas")
        try:
            js = nc.jetstream()
            await ensure_streams(js, cluster_settings)
            return (await js.stream_info(cluster_settings.names.readings_stream)).config
        finally:
            await close_nats(nc)

    assert asyncio.run(run()).num_replicas == REPLICAS
    assert set(stream_replicas(cluster_settings).values()) == {REPLICAS}


async def test_a_step_jetstream_does_not_answer_is_retried_loudly_anything_else_raised() -> None:
    calls = 0

    async def elect_then_answer() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise NatsTimeoutError  # a leader election: no answer for now
        return "answered"

    with capture_logs() as logs:
        assert await until_answered("ensure_stream", elect_then_answer) == "answered"
    assert calls == 3
    assert [e["event"] for e in logs] == ["jetstream_unanswered"]  # the first, then every tenth

    async def refused() -> str:
        raise BadRequestError(code=400, err_code=10005, description="no suitable peers")

    with pytest.raises(BadRequestError):
        await until_answered("ensure_stream", refused)
