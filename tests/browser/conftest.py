"""The running stack the browser tests drive: real processes in a namespace of their own.

Mosquitto with the project's configuration, ``powerflow ingest``, ``writer``, ``aggregator``,
``reporter``, ``api`` (serving the built dashboard) and ``simulate --devices 3 --interval 1``,
on the run's database, started once for the module and stopped after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from browser.pf_browser import (
    SIM_DEVICES,
    Simulator,
    Stack,
    healthy,
    missing_prerequisites,
)
from sqlalchemy import Engine

from conftest import service_env
from pf_testing import (
    FleetBroker,
    Service,
    admit,
    clean_tables,
    delete_namespace_streams,
    missing_prerequisite,
    wait_for,
)
from powerflow.broker import free_port
from powerflow_api.keys import create_key
from powerflow_common.settings import load_settings

# Five Python processes importing at once: on two busy cores that alone can take half a
# minute, so the stack gets longer than one service's usual 20 s to come up.
STACK_START_S = 90.0


@pytest.fixture(scope="module")
def stack(
    database_url: str,
    nats_url: str,
    redis_url: str,
    session_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if missing:
        missing_prerequisite(f"browser tests need: {', '.join(missing)}")
    log_dir = tmp_path_factory.mktemp("browser-stack")
    clean_tables(session_engine)
    namespace = f"b{uuid.uuid4().hex[:12]}"
    broker = FleetBroker(free_port(), log_dir / "mosquitto", namespace=namespace)
    broker.start()
    settings = load_settings(
        database_url=database_url,
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace,
        mqtt_url=broker.ingest_url(),
        broker_admin_url=broker.admin_url,
        writer_ack_wait_s=3.0,
        aggregator_ack_wait_s=3.0,
        writer_batch_linger_ms=50,
        nats_timeout_s=2.0,
    )
    api_port = free_port()
    env = service_env(
        settings,
        POWERFLOW_API_HOST="127.0.0.1",
        POWERFLOW_API_PORT=str(api_port),
        POWERFLOW_API_RATE_LIMIT_PER_WINDOW="100000",
        POWERFLOW_REPORTS_DIR=str(log_dir / "reports"),
        POWERFLOW_REPORT_MAX_RETRIES="0",
        POWERFLOW_REPORT_REAPER_INTERVAL_S="5",
        POWERFLOW_ALERTS_RULES_REFRESH_S="1",
        POWERFLOW_ALERTS_SILENCE_CHECK_S="0.5",
    )
    env.pop("ANTHROPIC_API_KEY", None)  # reports use the template narrative: offline, no cost
    base_url = f"http://127.0.0.1:{api_port}"
    keys = {
        role: create_key(session_engine, f"browser-{role}", role)[0]
        for role in ("admin", "operator", "viewer")
    }
    stack = Stack(base_url, keys, broker, settings, session_engine, SIM_DEVICES, log_dir)
    # The simulated fleet publishes on the shared topic: enrolled as legacy, admitted.
    admit(session_engine, *SIM_DEVICES)
    try:
        for name in ("writer", "aggregator", "ingest", "api", "reporter", "alerts"):
            stack.services[name] = Service(name, env, log_dir).start()
        stack.services["ingest"].wait_logged("mqtt_subscribed", STACK_START_S)
        wait_for(lambda: healthy(base_url), STACK_START_S, 0.2, "the API to answer /healthz")
        stack.services["api"].wait_logged("live_subscribed", STACK_START_S)
        # History first: 40 hours back-dated at 30 s (14,400 readings, published fast), so
        # today is compared with yesterday and the 24 h chart has a day to draw.
        # The simulator publishes with a TEST-ONLY account of its own (one connection per
        # account: the tests' own publishes use broker.fleet_url).
        sim_env = {**env, "POWERFLOW_MQTT_URL": broker.fleet_account("pf-test-simulator")}
        backfill = Simulator(
            sim_env,
            log_dir,
            "--devices",
            "3",
            "--interval",
            "30",
            "--count",
            "4800",
            "--rate",
            "4000",
        )
        stack.services["backfill"] = backfill.start()
        wait_for(lambda: not backfill.alive, 60, 0.2, "the back-dated history to be published")
        stack.services["simulate"] = Simulator(
            sim_env, log_dir, "--devices", "3", "--interval", "1"
        ).start()

        def every_device_stored() -> bool:
            status, body = stack.get("/api/v1/devices")
            return status == 200 and {d["code"] for d in body} >= set(SIM_DEVICES)

        wait_for(every_device_stored, 30, 0.3, "the simulated devices in the API")

        def history_aggregated() -> bool:
            # Every device has an hour of statistics from 39 hours ago: the backfill is in.
            for code in SIM_DEVICES:
                status, body = stack.get(f"/api/v1/stats/devices/{code}?period=hour")
                if status != 200 or sum(b["energy_kwh"] > 0 for b in body["buckets"]) < 39:
                    return False
            return True

        wait_for(history_aggregated, 60, 0.5, "the aggregator's hourly statistics of the history")
        yield stack
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc
    finally:
        for service in reversed(list(stack.services.values())):
            service.stop()
        broker.stop()
        delete_namespace_streams(settings)
        clean_tables(session_engine)
