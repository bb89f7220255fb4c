"""Property-based: schemathesis drives every operation of the app's own OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pf_api_data import add_device, add_hour, add_site, bearer
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import Engine

from powerflow_api.app import create_app
from powerflow_api.keys import create_key
from powerflow_common.settings import Settings

MAX_EXAMPLES = 12


@pytest.fixture
def admin_key(engine: Engine) -> str:
    return create_key(engine, "schemathesis", "admin")[0]


@pytest.fixture
def api_schema(engine: Engine, api_settings: Settings) -> Iterator[Any]:
    """The app's schema, loaded from its own /schema/openapi.json, with a little data behind it."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    site = add_site(engine)
    device = add_device(engine, "1001", last_seen=now, site_id=site, meter_role="main")
    add_hour(engine, device, now, energy_kwh=1.0)
    yield schemathesis.openapi.from_asgi(
        "/schema/openapi.json", create_app(api_settings, engine=engine)
    )


def test_no_operation_answers_5xx_and_every_answer_matches_the_schema(
    api_schema: Any, admin_key: str
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(
                headers=bearer(admin_key),
                checks=[not_a_server_error, response_schema_conformance],
            )

        exercise()
