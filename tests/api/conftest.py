"""Fixtures of the API tests: the real app on the real database, NATS and Redis, and keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from pf_testing import delete_namespace_streams
from powerflow_api.app import create_app
from powerflow_api.keys import ROLES, create_key, revoke_key
from powerflow_common.settings import Settings, load_settings

Client = TestClient[Any]


@pytest.fixture
def api_settings(
    database_url: str, nats_url: str, redis_url: str, namespace: str
) -> Iterator[Settings]:
    """Settings of an API under test: its own namespace (Redis keys, subjects), short timeouts.

    The API creates its namespace's streams when it connects; they are deleted afterwards.
    """
    settings = load_settings(
        database_url=database_url,
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace,
        nats_timeout_s=2.0,
        api_redis_timeout_s=0.5,
        api_rate_limit_per_window=10_000,
    )
    yield settings
    delete_namespace_streams(settings)


@pytest.fixture
def make_client(engine: Engine, api_settings: Settings) -> Iterator[Callable[..., Client]]:
    """Start the app (lifespan included) with setting overrides; closed after the test."""
    opened: list[Client] = []

    def make(**overrides: Any) -> Client:
        settings = load_settings(**{**dict(api_settings), **overrides})
        client: Client = TestClient(create_app(settings, engine=engine), timeout=10)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


# The devices the fixture's device key may post for (the gateway codes the tests use).
DEVICE_KEY_CODES = ("gw-1", "gw-2", "gw-9", "fix-e2e")


@pytest.fixture
def keys(engine: Engine) -> dict[str, str]:
    """One key per role (the device key bound to DEVICE_KEY_CODES), and a revoked admin key."""
    made: dict[str, str] = {
        r: create_key(engine, f"test-{r}", r, DEVICE_KEY_CODES if r == "device" else ())[0]
        for r in ROLES
    }
    made["revoked"] = create_key(engine, "test-revoked", "admin")[0]
    revoke_key(engine, "test-revoked")
    return made


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
