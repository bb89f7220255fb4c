"""Property-based: schemathesis drives every operation of the app's own OpenAPI document.

Its examples come from hypothesis, so the root conftest's profile decides them: the same ones
on every ``make test`` run (derandomized), many random ones under ``make fuzz``. A failure found
by fuzzing becomes a case in ``FIXED_CASES`` below (and a plain regression test beside the
code it fixed), so every later run draws it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import schemathesis
import schemathesis.python.asgi
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, given, settings
from pf_api_data import add_device, add_hour, add_site, bearer
from pf_hypothesis import examples
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import Engine

from powerflow.broker import Broker

# The two schemathesis modules above are imported here, at collection, not first inside
# from_asgi: pytest rewrites schemathesis' modules as they are imported (it is a pytest
# plugin), and CPython 3.11 can fail that compile inside a running hypothesis test ("AST
# constructor recursion depth mismatch", seen once in a CI run under pytest-xdist).
from powerflow_api.app import create_app
from powerflow_api.keys import create_key
from powerflow_common.costs import assign_site_tariff
from powerflow_common.settings import Settings, load_settings

# Per operation and generation mode: an eighth of the profile's count (12 in make test, 250
# under make fuzz) keeps the ~20 operations within a minute or two on two shared cores.
MAX_EXAMPLES = examples(1 / 8)
REDIS_TIMEOUT_S = 10.0
# Inputs beyond a bound, kept so every run sends them (method, path, case fields); the first,
# fourth, fifth and sixth answered 500 before their bounds existed.
FIXED_CASES: list[tuple[str, str, dict[str, Any]]] = [
    # Found in a fresh clone: an unbounded integer reached SQL's OFFSET.
    ("GET", "/api/v1/reports", {"query": {"offset": 2233205945456851156992}}),
    ("GET", "/api/v1/devices", {"query": {"site_id": 2233205945456851156992}}),
    ("GET", "/api/v1/sites/{site_id}", {"path_parameters": {"site_id": 2**63}}),
    # Year 1 at +05:00 overflowed converting to UTC; 9999 at -05:00 too.
    (
        "GET",
        "/api/v1/devices/{code}/readings",
        {"path_parameters": {"code": "1001"}, "query": {"start": "0001-01-01T00:00:00+05:00"}},
    ),
    (
        "GET",
        "/api/v1/devices/{code}/readings",
        {"path_parameters": {"code": "1001"}, "query": {"end": "9999-12-31T23:00:00-05:00"}},
    ),
    (
        "POST",
        "/api/v1/reports",
        {"body": {"period_start": "0001-01-01", "period_end": "0001-01-02"}},
    ),
    # The correction endpoints overflowed the same way (found by make fuzz's review).
    (
        "GET",
        "/api/v1/devices/{code}/corrections",
        {"path_parameters": {"code": "1001"}, "query": {"since": "0001-01-01T00:00:00+05:00"}},
    ),
    (
        "POST",
        "/api/v1/devices/{code}/readings/{ts}/corrections",
        {
            "path_parameters": {"code": "1001", "ts": "9999-12-31T23:00:00-05:00"},
            "body": {"values": {"power_w": 1.0}, "reason": "fuzz"},
        },
    ),
    # Baselines and savings: local days whose midnight would overflow converting to UTC.
    (
        "POST",
        "/api/v1/sites/{site_id}/baselines",
        {"path_parameters": {"site_id": 1}, "body": {"start": "0001-01-01", "end": "0001-01-02"}},
    ),
    (
        "GET",
        "/api/v1/sites/{site_id}/savings",
        {"path_parameters": {"site_id": 1}, "query": {"start": "0001-01-01", "end": "9999-12-31"}},
    ),
]


@pytest.fixture
def admin_key(engine: Engine) -> str:
    return create_key(engine, "schemathesis", "admin")[0]


@pytest.fixture
def api_schema(engine: Engine, api_settings: Settings, broker: Broker) -> Iterator[Any]:
    """The app's schema, loaded from its own /schema/openapi.json, with a little data behind it.

    Enrolment manages a real broker of the test's own (without one it answers 503 by design).
    """
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    site = add_site(engine)
    device = add_device(engine, "1001", last_seen=now, site_id=site, meter_role="main")
    add_hour(engine, device, now, energy_kwh=1.0)
    with engine.begin() as conn:  # the cost endpoints answer with a bill, not only 404
        assign_site_tariff(conn, site, "kepco-general-b-high-a-ii", 500.0, date(2020, 1, 1), by="t")
    # A 503 is right when Redis is away, not when two busy cores make it answer in 0.6 s.
    settings = load_settings(
        **{
            **dict(api_settings),
            "api_redis_timeout_s": REDIS_TIMEOUT_S,
            "broker_admin_url": broker.admin_url,
        }
    )
    yield schemathesis.openapi.from_asgi(
        "/schema/openapi.json", create_app(settings, engine=engine)
    )


# hypothesis marks its own @given tests; this one calls @given inside, so it says so itself
# (make fuzz selects -m hypothesis).
@pytest.mark.hypothesis
def test_no_operation_answers_5xx_and_every_answer_matches_the_schema(
    api_schema: Any, admin_key: str
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    for operation, mode in [(op, mode) for op in operations for mode in modes]:

        @given(case=operation.as_strategy(generation_mode=mode))
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


@pytest.mark.parametrize(("method", "path", "fields"), FIXED_CASES)
def test_inputs_that_once_answered_500_answer_4xx_with_their_bound(
    api_schema: Any, admin_key: str, method: str, path: str, fields: dict[str, Any]
) -> None:
    case = api_schema[path][method].Case(**fields)
    response = case.call_and_validate(
        headers=bearer(admin_key), checks=[not_a_server_error, response_schema_conformance]
    )
    assert 400 <= response.status_code < 500
