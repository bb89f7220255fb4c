"""``powerflow ingest``: wire settings, MQTT, NATS and the bridge together, and stop cleanly."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server

from powerflow_common.broker_health import broker_key
from powerflow_common.formats.registry import default_topics, enabled_formats
from powerflow_common.ingest_slots import assign_topics, slot_client_ids
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings, redact_url
from powerflow_common.validation import limits_from_settings
from powerflow_ingest import metrics
from powerflow_ingest.bridge import Bridge
from powerflow_ingest.broker_health import SYS_TOPICS, BrokerHealth
from powerflow_ingest.inbox import Inbox
from powerflow_ingest.leases import LeaseKeeper, member_id, open_leases_bucket
from powerflow_ingest.mqtt import (
    BrokerAddress,
    MqttSource,
    SysListener,
    checked_slot_login,
    slot_address,
)
from powerflow_ingest.slots import SlotSources
from powerflow_ingest.stream_watch import watch_streams

log = get_logger(__name__)


async def run_ingest(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the bridge until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or _stop_on_signals()
    names = settings.names
    formats = enabled_formats(settings.formats)
    topics = settings.mqtt_topics or default_topics(formats)
    # Before any connection: a wrong broker account is a configuration error, said at once.
    address = BrokerAddress.parse(settings.mqtt_login_url, settings.mqtt_ca_file)
    client_ids = slot_client_ids(names, settings.ingest_slots)
    checked_slot_login(address, client_ids)
    slot_topics = assign_topics(topics, settings.ingest_slots)
    member = member_id(settings.ingest_instance)
    nc = await connect_nats(settings, name=f"powerflow-ingest-{settings.ingest_instance}")
    js = nc.jetstream(timeout=settings.nats_timeout_s)
    await ensure_streams(js, settings)
    kv, lease_ttl_s = await open_leases_bucket(
        js, names, settings.ingest_lease_ttl_s, replicas=settings.stream_replicas
    )
    metrics.NATS_CONNECTED.set(1)

    inbox = Inbox(asyncio.get_running_loop())
    health = BrokerHealth(
        loop=asyncio.get_running_loop(),
        js=js,
        names=names,
        broker=f"{address.host}:{address.port}",
        key=broker_key(address.host, address.port),
        wait_s=settings.broker_sys_wait_s,
    )

    def make_source(slot: int, sys_listener: SysListener | None) -> MqttSource:
        # Each slot logs in as its own client id (its account), one password for all.
        return MqttSource(
            address=slot_address(address, client_ids[slot]),
            client_id=client_ids[slot],
            topics=slot_topics[slot],
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            keepalive_s=settings.mqtt_keepalive_s,
            deliver=inbox.put,
            sys_topics=SYS_TOPICS,
            sys_listener=sys_listener,
            protocol=settings.mqtt_protocol,
            slot=slot,
        )

    sources = SlotSources(make_source, health)
    keeper = LeaseKeeper(
        js=js,
        kv=kv,
        names=names,
        member=member,
        slots=settings.ingest_slots,
        ttl_s=lease_ttl_s,
        handler=sources,
    )
    bridge = Bridge(
        js=js,
        names=names,
        partition=settings.ingest_instance,
        formats=formats,
        limits=limits_from_settings(settings),
        ack=sources.ack,
        batch_max_messages=settings.ingest_batch_max_messages,
        batch_linger_s=settings.ingest_batch_linger_ms / 1000,
        max_in_flight=settings.ingest_max_publishes_in_flight,
        publish_timeout_s=settings.nats_timeout_s,
        rejected_payload_max_bytes=settings.rejected_payload_max_bytes,
    )
    log.info(
        "ingest_starting",
        mqtt=redact_url(settings.mqtt_url.get_secret_value()),
        mqtt_protocol=settings.mqtt_protocol,
        topics=list(topics),
        slots=settings.ingest_slots,
        slot_topics={client_ids[i]: list(t) for i, t in enumerate(slot_topics)},
        member=member,
        lease_ttl_s=settings.ingest_lease_ttl_s,
        formats=[f.name for f in formats],
        nats=settings.nats_servers,
        stream=names.readings_stream,
        subject=names.readings_subject(settings.ingest_instance),
    )
    leasing = asyncio.create_task(keeper.run(stop))
    watching_streams = asyncio.create_task(watch_streams(js, settings, stop))
    watching = asyncio.create_task(health.run(stop))
    try:
        await bridge.run(inbox, stop)
    finally:
        watching_streams.cancel()
        stop.set()
        await leasing
        # After the bridge acked what it had: disconnect every slot and release its lease,
        # so the other instances adopt them now rather than after the TTL.
        try:
            await keeper.release_all()
        finally:
            await sources.stop_all()
        await watching
        await close_nats(nc)
        log.info("ingest_stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main(settings: Settings) -> None:
    """Entry point of ``powerflow ingest``."""
    if settings.ingest_metrics_port:
        start_http_server(settings.ingest_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_ingest(settings))
