"""Many ingest bridges: slot leases in a real JetStream key-value bucket, and two real ingest
processes under load, one killed -9 and kept down.

The lease tests drive ``LeaseKeeper`` against the embedded nats-server with a handler that
records, on one timeline, when each instance starts and stops serving a slot: a slot
started by one instance while another still serves it fails the test at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError
from pydantic import SecretStr
from sqlalchemy import Engine

from conftest import service_env
from pf_testing import (
    DeviceConnection,
    FleetBroker,
    Service,
    TcpProxy,
    count_rows,
    mosquitto_binary,
    wait_for,
)
from powerflow.broker import account_url, free_port
from powerflow.mqtt_embedded import EmbeddedBroker
from powerflow.simulate import connect_publisher
from powerflow_common.broker_admin import new_password
from powerflow_common.embedded_broker import read_state
from powerflow_common.ingest_slots import adoption_bound_s, slot_key
from powerflow_common.jetstream import delete_streams
from powerflow_common.names import Names, kv_stream
from powerflow_common.settings import Settings
from powerflow_ingest.leases import LeaseKeeper, open_leases_bucket

TTL_S = 2.0  # short leases: the tests wait them out
SLOTS = 4


@dataclass
class Timeline:
    """Who serves which slot, checked at every change; what happened, with times."""

    serving: dict[int, str] = field(default_factory=dict)
    events: list[tuple[float, str, str, int]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def handler(self, member: str) -> Handler:
        return Handler(self, member)

    def started(self, member: str, slot: int) -> None:
        other = self.serving.get(slot)
        if other is not None and other != member:
            self.violations.append(f"slot {slot}: {member} started while {other} serves it")
        self.serving[slot] = member
        self.events.append((time.monotonic(), "start", member, slot))

    def stopped(self, member: str, slot: int) -> None:
        if self.serving.get(slot) == member:
            del self.serving[slot]
        self.events.append((time.monotonic(), "stop", member, slot))

    def held_by(self, member: str) -> list[int]:
        return sorted(s for s, m in self.serving.items() if m == member)

    def first(self, kind: str, member: str, after: float = 0.0) -> float | None:
        times = [t for t, k, m, _ in self.events if k == kind and m == member and t >= after]
        return min(times) if times else None


@dataclass
class Handler:
    timeline: Timeline
    member: str
    dead: bool = False

    async def acquired(self, slot: int) -> None:
        assert not self.dead
        self.timeline.started(self.member, slot)

    async def lost(self, slot: int) -> None:
        self.timeline.stopped(self.member, slot)


async def connect(url: str) -> NATS:
    nc = NATS()
    await nc.connect(servers=[url], max_reconnect_attempts=-1, reconnect_time_wait=1)
    return nc


@contextlib.asynccontextmanager
async def keeper_on(
    url: str, names: Names, member: str, timeline: Timeline, slots: int = SLOTS
) -> AsyncIterator[tuple[LeaseKeeper, asyncio.Event, asyncio.Task[None], Handler]]:
    nc = await connect(url)
    js = nc.jetstream(timeout=1.0)
    kv, ttl_s = await open_leases_bucket(js, names, TTL_S)
    handler = timeline.handler(member)
    keeper = LeaseKeeper(
        js=js, kv=kv, names=names, member=member, slots=slots, ttl_s=ttl_s, handler=handler
    )
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    try:
        yield keeper, stop, task, handler
    finally:
        stop.set()
        if not task.done():
            await task
            with contextlib.suppress(Exception):
                await keeper.release_all()
        await nc.close()


async def until(condition: object, timeout_s: float, what: str) -> float:
    """Poll ``condition()`` until true; returns when it became true (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def names(settings: Settings) -> Iterator[Names]:
    """This test's namespace; its bucket is deleted with its streams (settings fixture)."""
    yield settings.names


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


# --- the lease logic on a real bucket ---------------------------------------------------------


def test_two_instances_share_the_slots_and_never_hold_one_together(
    nats_url: str, names: Names
) -> None:
    async def scenario() -> None:
        timeline = Timeline()
        async with keeper_on(nats_url, names, "a", timeline) as (a, *_):
            await until(lambda: len(timeline.held_by("a")) == SLOTS, 10, "a to hold all")
            async with keeper_on(nats_url, names, "b", timeline) as (b, *_):
                await until(
                    lambda: timeline.held_by("a") and len(timeline.held_by("b")) == SLOTS // 2,
                    15,
                    "b to take its half",
                )
                assert len(timeline.held_by("a")) == SLOTS // 2
                # Stable: several renewal rounds change nothing.
                before = list(timeline.events)
                await asyncio.sleep(TTL_S * 1.5)  # rounds happen; nothing to synchronise on
                assert timeline.events == before
                assert sorted(a.slots_held + b.slots_held) == list(range(SLOTS))
            released = time.monotonic()
            # b stopped cleanly and released: a takes them back without waiting out the TTL.
            took = await until(lambda: len(timeline.held_by("a")) == SLOTS, 10, "a to retake")
            assert took - released < TTL_S
        assert not timeline.violations, timeline.violations

    run(scenario())


def test_racing_claims_make_one_holder(nats_url: str, names: Names) -> None:
    """Six instances start at once on one bucket: every slot ends with one holder."""

    async def scenario() -> None:
        timeline = Timeline()
        async with contextlib.AsyncExitStack() as stack:
            keepers = [
                (await stack.enter_async_context(keeper_on(nats_url, names, f"m{i}", timeline)))[0]
                for i in range(6)
            ]
            await until(lambda: len(timeline.serving) == SLOTS, 15, "every slot served")
            await asyncio.sleep(TTL_S)  # a few more rounds of balancing
            held = [k.slots_held for k in keepers]
            assert sorted(s for h in held for s in h) == list(range(SLOTS))
            assert max(len(h) for h in held) == 1
        assert not timeline.violations, timeline.violations

    run(scenario())


def test_a_dead_instance_s_slots_are_adopted_after_the_ttl(nats_url: str, names: Names) -> None:
    async def scenario() -> None:
        timeline = Timeline()
        async with (
            keeper_on(nats_url, names, "a", timeline) as (_a, _sa, task_a, handler_a),
            keeper_on(nats_url, names, "b", timeline) as (_b, *_),
        ):
            await until(lambda: len(timeline.held_by("b")) == SLOTS // 2, 15, "balance")
            lost = timeline.held_by("a")
            # a dies: no more renewals, no release (what kill -9 leaves behind).
            task_a.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task_a
            handler_a.dead = True
            died = time.monotonic()
            for slot in lost:
                timeline.stopped("a", slot)  # its MQTT sessions died with it
            adopted = await until(
                lambda: len(timeline.held_by("b")) == SLOTS, 4 * TTL_S, "b to adopt a's slots"
            )
            # Not before the leases could expire; within the TTL and one round after.
            assert adopted - died <= adoption_bound_s(TTL_S) + 1.0
        assert not timeline.violations, timeline.violations

    run(scenario())


def test_a_holder_cut_off_from_nats_lets_go_before_anyone_claims(
    nats_url: str, names: Names
) -> None:
    """A partitioned instance cannot renew: it disconnects its slots at its deadline, and only
    after that can the other instance claim them (when the server expired the leases)."""
    parts = urlsplit(nats_url)
    proxy = TcpProxy(parts.port or 4222).start()
    userinfo = parts.netloc.rpartition("@")[0]
    proxied = parts._replace(netloc=f"{userinfo}@127.0.0.1:{proxy.port}").geturl()

    async def scenario() -> None:
        timeline = Timeline()
        async with (
            keeper_on(proxied, names, "a", timeline),
            keeper_on(nats_url, names, "b", timeline),
        ):
            await until(lambda: len(timeline.held_by("b")) == SLOTS // 2, 15, "balance")
            lost = timeline.held_by("a")
            cut = time.monotonic()
            proxy.cut()
            await until(lambda: len(timeline.held_by("b")) == SLOTS, 5 * TTL_S, "b to adopt")
            for slot in lost:
                stops = [t for t, k, m, s in timeline.events if (k, m, s) == ("stop", "a", slot)]
                starts = [t for t, k, m, s in timeline.events if (k, m, s) == ("start", "b", slot)]
                assert stops and starts
                assert cut < min(stops) < max(starts)
            proxy.restore()
        assert not timeline.violations, timeline.violations

    try:
        run(scenario())
    finally:
        proxy.cut()


def test_a_longer_ttl_is_applied_a_shorter_one_waits_for_no_live_instance(
    nats_url: str, names: Names
) -> None:
    async def scenario() -> None:
        nc = await connect(nats_url)
        js = nc.jetstream()
        stream = kv_stream(names.ingest_leases_bucket)
        try:
            _, ttl = await open_leases_bucket(js, names, 5.0)
            assert ttl == 5.0
            await (await js.key_value(names.ingest_leases_bucket)).put("member.x", b"{}")
            _, ttl = await open_leases_bucket(js, names, 3.0)  # a member is live: kept
            assert ttl == 3.0
            assert (await js.stream_info(stream)).config.max_age == pytest.approx(5.0)
            _, ttl = await open_leases_bucket(js, names, 8.0)
            assert (await js.stream_info(stream)).config.max_age == pytest.approx(8.0)
        finally:
            await nc.close()

    run(scenario())


# --- two ingest processes under load, one killed -9 and kept down ------------------------------

DEVICES = 16
PER_DEVICE = 150
PUBLISH_RATE_PER_S = 600  # about 4 s of publishing, so the kill lands in the middle
E2E_TTL_S = float(os.environ.get("POWERFLOW_TEST_LEASE_TTL_S", "3.0"))  # measure others


# The embedded broker resends an unacked message after its ack_wait, also to a session
# resumed by another connection: short here, so the test does not wait out 10 s.
EMBEDDED_ACK_WAIT_S = 2


@dataclass
class SlotBroker:
    """A broker with this test's K ingest slot accounts, and a TEST-ONLY fleet publisher."""

    ingest_url: str
    fleet_url: str
    protocol: str


@pytest.fixture(params=["mosquitto", "embedded"])
def slot_broker(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str, dev_certs: Path
) -> Iterator[SlotBroker]:
    """The project's Mosquitto (MQTT 5), or the embedded broker (nats-server, MQTT 3.1.1)."""
    if request.param == "mosquitto":
        mosquitto_binary()
        broker = FleetBroker(
            free_port(),
            tmp_path / "mosquitto",
            namespace=namespace,
            certs_from=dev_certs,
            ingest_slots=SLOTS,
        )
        broker.start()
        try:
            yield SlotBroker(broker.ingest_url(), broker.fleet_url, "5")
        finally:
            broker.stop()
        return
    embedded = EmbeddedBroker(
        free_port(),
        tmp_path / "mqtt",
        namespace=namespace,
        ack_wait_s=EMBEDDED_ACK_WAIT_S,
        ingest_slots=SLOTS,
    )
    embedded.start()
    try:
        password = new_password()
        with embedded.admin() as admin:
            admin.set_client("pf-test-fleet", password, publish=["#"])
        fleet = account_url(embedded.connect_host, embedded.port, "pf-test-fleet", password)
        yield SlotBroker(embedded.ingest_url(), fleet, "3.1.1")
    finally:
        embedded.stop()


def device_topic(d: int) -> str:
    return f"power/dev{d:02d}/measurement"


def messages(end: datetime) -> list[tuple[str, str]]:
    """PER_DEVICE readings 5 s apart for each device on its own topic (every slot's topics)."""
    start = end - timedelta(seconds=5 * PER_DEVICE)
    out = []
    for i in range(PER_DEVICE):
        ts = (start + timedelta(seconds=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for d in range(DEVICES):
            body = {"deviceCode": f"dev{d:02d}", "timestamp": ts, "electric": 100 + d + i}
            out.append((device_topic(d), json.dumps(body)))
    return out


def paced_publish(url: str, batch: list[tuple[str, str]], published: list[int]) -> None:
    """Publish at QoS 1 at about PUBLISH_RATE_PER_S (load over time, not a burst), counting
    what the broker acknowledged."""
    client = connect_publisher(url, "pf-test-fleet")
    chunk = PUBLISH_RATE_PER_S // 10
    started = time.monotonic()
    try:
        for n, at in enumerate(range(0, len(batch), chunk)):
            infos = [client.publish(t, p, qos=1) for t, p in batch[at : at + chunk]]
            for info in infos:
                info.wait_for_publish(30)
            published[0] += len(infos)
            ahead = started + (n + 1) / 10 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load generator, not synchronising the test
    finally:
        client.loop_stop()
        client.disconnect()


def log_events(service: Service, event: str) -> list[dict[str, object]]:
    found = []
    for line in service.log_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


def slot_owners(settings: Settings) -> dict[int, str | None]:
    async def read() -> dict[int, str | None]:
        nc = await connect(settings.nats_url)
        try:
            kv = await nc.jetstream().key_value(settings.names.ingest_leases_bucket)
            owners: dict[int, str | None] = {}
            for slot in range(SLOTS):
                try:
                    entry = await kv.get(slot_key(slot))
                    owners[slot] = json.loads(entry.value or b"{}").get("owner")
                except Exception:
                    owners[slot] = None
            return owners
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.mark.slow
def test_two_ingests_one_killed_and_kept_down_every_reading_stored_once(
    settings: Settings, slot_broker: SlotBroker, engine: Engine, tmp_path: Path
) -> None:
    topics = ",".join(device_topic(d) for d in range(DEVICES))
    settings = settings.model_copy(update={"mqtt_url": SecretStr(slot_broker.ingest_url)})
    env = service_env(
        settings,
        POWERFLOW_INGEST_SLOTS=str(SLOTS),
        POWERFLOW_INGEST_LEASE_TTL_S=str(E2E_TTL_S),
        POWERFLOW_MQTT_TOPICS=topics,
        POWERFLOW_MQTT_PROTOCOL=slot_broker.protocol,
    )
    ingests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ingests.append(
            Service("ingest", dict(env, POWERFLOW_INGEST_INSTANCE=name), tmp_path / name)
        )
    writer = Service("writer", env, tmp_path)
    try:
        writer.start()
        for ingest in ingests:
            ingest.start()
        members = {}
        for ingest in ingests:
            ingest.wait_logged("ingest_starting")
            members[ingest] = str(log_events(ingest, "ingest_starting")[0]["member"])
        a, b = ingests

        def shares() -> list[int]:
            owners = list(slot_owners(settings).values())
            return [owners.count(members[a]), owners.count(members[b])]

        wait_for(
            lambda: shares() == [SLOTS // 2, SLOTS // 2],
            60,
            interval_s=0.2,
            what="two ingests sharing the slots",
        )
        # b subscribed on the two it claimed; a on its first sessions (it may have had all).
        wait_for(
            lambda: (
                len(log_events(a, "mqtt_subscribed")) >= SLOTS // 2
                and len(log_events(b, "mqtt_subscribed")) >= SLOTS // 2
            ),
            30,
            what="every slot subscribed",
        )
        writer.wait_logged("writer_starting")

        batch = messages(datetime.now(UTC).replace(microsecond=0))
        published = [0]
        publisher = threading.Thread(
            target=paced_publish, args=(slot_broker.fleet_url, batch, published), daemon=True
        )
        publisher.start()
        wait_for(lambda: published[0] >= len(batch) // 3, 60, interval_s=0.01, what="load")
        a.kill9()
        killed = time.monotonic()
        stored_at_kill = count_rows(engine)
        adopted = wait_for(
            lambda: set(slot_owners(settings).values()) == {members[b]} and time.monotonic(),
            8 * E2E_TTL_S,
            interval_s=0.05,
            what="the survivor to hold every slot",
        )
        claimed_s = adopted - killed
        wait_for(
            lambda: len(log_events(b, "mqtt_subscribed")) >= SLOTS,
            30,
            what="the survivor's sessions for every slot",
        )
        reconnected_s = time.monotonic() - killed
        publisher.join(60)
        assert not publisher.is_alive()
        wait_for(lambda: count_rows(engine) == len(batch), 90, what=f"all {len(batch)} rows")
        assert stored_at_kill < len(batch), "ingest was killed after the load, not under it"
        assert not a.alive and b.alive
        assert set(slot_owners(settings).values()) == {members[b]}
        # Exactly once: the (device, ts) key makes a second copy impossible; the count says
        # none is missing and nothing else came in.
        assert count_rows(engine) == len(batch)
        assert claimed_s <= adoption_bound_s(E2E_TTL_S) + 2.0
        print(
            f"\nMQTT {slot_broker.protocol}: adoption after kill -9 (lease TTL {E2E_TTL_S} s):"
            f" survivor held every slot after {claimed_s:.2f} s,"
            f" subscribed on all after {reconnected_s:.2f} s; "
            f"{len(batch)} readings stored once"
        )
    finally:
        for ingest in ingests:
            ingest.stop()
        writer.stop()


def test_stream_cleanup_deletes_the_lease_bucket(nats_url: str, settings: Settings) -> None:
    async def scenario() -> None:
        nc = await connect(nats_url)
        js = nc.jetstream()
        try:
            await open_leases_bucket(js, settings.names, TTL_S)
            await delete_streams(js, settings)
            with pytest.raises(BucketNotFoundError):
                await js.key_value(settings.names.ingest_leases_bucket)
        finally:
            await nc.close()

    run(scenario())


# --- the broker accounts: exactly the K slot ids, one password --------------------------------


def test_mosquitto_has_exactly_the_k_slot_accounts(
    tmp_path: Path, namespace: str, dev_certs: Path
) -> None:
    mosquitto_binary()
    broker = FleetBroker(
        free_port(), tmp_path / "mosquitto", namespace=namespace, certs_from=dev_certs,
        ingest_slots=3,
    )  # fmt: skip
    broker.start()
    try:
        expected = {f"{namespace}-powerflow-ingest-{i}" for i in range(3)}
        with broker.admin() as admin:
            ingest_accounts = {c for c in admin.list_clients() if "powerflow-ingest" in c}
        assert ingest_accounts == expected
        password = broker.ingest_password()
        for username in sorted(expected):
            connection = DeviceConnection(broker, username, password)
            try:
                assert connection.accepted, (username, connection.reason)
            finally:
                connection.close()
        # A fourth id is no account: refused.
        stranger = DeviceConnection(broker, f"{namespace}-powerflow-ingest-3", password)
        try:
            assert not stranger.accepted
        finally:
            stranger.close()
    finally:
        broker.stop()


def test_the_embedded_broker_has_exactly_the_k_slot_accounts(
    tmp_path: Path, namespace: str
) -> None:
    embedded = EmbeddedBroker(free_port(), tmp_path / "mqtt", namespace=namespace, ingest_slots=3)
    embedded.start()
    try:
        expected = {f"{namespace}-powerflow-ingest-{i}" for i in range(3)}
        assert set(read_state(embedded.folder)["ingest"]) == expected
        password = embedded.ingest_password()
        for username in sorted(expected):
            connection = DeviceConnection(embedded, username, password)  # type: ignore[arg-type]
            try:
                assert connection.accepted, (username, connection.reason)
            finally:
                connection.close()
    finally:
        embedded.stop()
