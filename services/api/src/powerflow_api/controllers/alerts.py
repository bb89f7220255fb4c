"""Alerts (list, acknowledge, mute) and alert rules (create, read, update, delete)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, Parameter, PathParameter, QueryParameter
from sqlalchemy import Connection

from powerflow_api import alerts, schemas
from powerflow_api.auth import principal_of, requires
from powerflow_api.paging import OFFSET, TOTAL, page, page_limit
from powerflow_api.problems import ApiError
from powerflow_api.readings import as_utc
from powerflow_api.state import api_state
from powerflow_common.alert_rules import InvalidRule
from powerflow_common.bounds import MAX_OFFSET, MAX_ROW_ID, MIN_ROW_ID
from powerflow_common.db.dialect import begin_write

Req = Request[Any, Any, Any]
T = TypeVar("T")
RuleId = Annotated[int, PathParameter(description="The rule id", ge=MIN_ROW_ID, le=MAX_ROW_ID)]
AlertId = Annotated[int, PathParameter(description="The alert id", ge=MIN_ROW_ID, le=2**63 - 1)]
LIMIT = Parameter(
    default=None,
    ge=1,
    description="At most this many, newest first (default and maximum: api_list_page_max)",
)
# "state" is a name Litestar reserves for the app's state: the parameter is read from ?state=.
STATE = QueryParameter(name="state", description="open (default), cleared or all")
MAX_MUTE = timedelta(days=90)


def _call(request: Req, fn: Callable[[Connection], T], *, write: bool = False) -> T:
    """Run a query of powerflow_api.alerts; its domain errors become problems."""
    engine = api_state(request).engine
    try:
        if write:
            with begin_write(engine) as conn:
                return fn(conn)
        with engine.connect() as conn:
            return fn(conn)
    except (alerts.RuleNotFound, alerts.AlertNotFound) as exc:
        raise NotFoundException(str(exc)) from exc
    except alerts.TooManyRules as exc:
        raise ApiError(status_code=409, detail=str(exc)) from exc
    except InvalidRule as exc:
        raise ApiError(
            status_code=422,
            detail=exc.detail,
            extra=[{"key": exc.reason, "message": exc.detail}],
        ) from exc


class AlertRuleController(Controller):
    path = "/alert-rules"
    tags = ["alerts"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("viewer")], sync_to_thread=True, response_headers=[TOTAL])
    def list_rules(
        self, request: Req, limit: int | None = LIMIT, offset: int = OFFSET
    ) -> Response[list[schemas.AlertRule]]:
        """Every alert rule, by id (paged)."""
        size = page_limit(api_state(request).settings, limit)
        rules, total = _call(request, lambda c: alerts.list_rules(c, size, offset))
        return page(rules, total)

    @get("/{rule_id:int}", guards=[requires("viewer")], sync_to_thread=True)
    def get_rule(self, request: Req, rule_id: RuleId) -> schemas.AlertRule:
        """One alert rule."""
        return _call(request, lambda c: alerts.get_rule(c, rule_id))

    @post("/", guards=[requires("operator")], sync_to_thread=True)
    def create_rule(
        self, request: Req, data: JSONBody[schemas.AlertRuleCreate]
    ) -> schemas.AlertRule:
        """Create a rule (operator); 422 says which parameter is wrong."""
        by = principal_of(request).name
        now = datetime.now(UTC)
        top = api_state(request).settings.alerts_rules_max
        return _call(request, lambda c: alerts.create_rule(c, data, by, now, top), write=True)

    @patch("/{rule_id:int}", guards=[requires("operator")], sync_to_thread=True)
    def update_rule(
        self, request: Req, rule_id: RuleId, data: JSONBody[schemas.AlertRuleUpdate]
    ) -> schemas.AlertRule:
        """Rename, re-parameterise, enable or disable a rule (operator)."""
        now = datetime.now(UTC)
        return _call(request, lambda c: alerts.update_rule(c, rule_id, data, now), write=True)

    @delete("/{rule_id:int}", guards=[requires("operator")], sync_to_thread=True)
    def delete_rule(self, request: Req, rule_id: RuleId) -> None:
        """Delete a rule with its alerts and undelivered notifications (operator)."""
        _call(request, lambda c: alerts.delete_rule(c, rule_id), write=True)


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("viewer")], sync_to_thread=True, response_headers=[TOTAL])
    def list_alerts(
        self,
        request: Req,
        alert_state: Annotated[alerts.AlertState, STATE] = "open",
        limit: int | None = LIMIT,
        offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET, description="Skip this many"),
    ) -> Response[list[schemas.Alert]]:
        """Alerts, newest first: open (default), cleared or all (paged)."""
        size = page_limit(api_state(request).settings, limit)
        found, total = _call(request, lambda c: alerts.list_alerts(c, alert_state, size, offset))
        return page(found, total)

    @get("/{alert_id:int}", guards=[requires("viewer")], sync_to_thread=True)
    def get_alert(self, request: Req, alert_id: AlertId) -> schemas.Alert:
        """One alert with its evidence."""
        return _call(request, lambda c: alerts.get_alert(c, alert_id))

    @post("/{alert_id:int}/acknowledge", guards=[requires("operator")], sync_to_thread=True)
    def acknowledge(self, request: Req, alert_id: AlertId) -> schemas.Alert:
        """Acknowledge an alert (operator): who and when are kept; a second time changes nothing."""
        by = principal_of(request).name
        now = datetime.now(UTC)
        return _call(request, lambda c: alerts.acknowledge(c, alert_id, by, now), write=True)

    @post("/{alert_id:int}/mute", guards=[requires("operator")], sync_to_thread=True)
    def mute(
        self, request: Req, alert_id: AlertId, data: JSONBody[schemas.AlertMute]
    ) -> schemas.Alert:
        """Mute an alert's notifications, and its rule's on the same subject, until ``until``."""
        until = None if data.until is None else as_utc(data.until, "until")
        now = datetime.now(UTC)
        if until is not None and not now < until <= now + MAX_MUTE:
            raise ApiError(
                status_code=422,
                detail="until must be in the future and at most 90 days ahead; null unmutes.",
                extra=[{"key": "until", "message": "in the future, at most 90 days ahead"}],
            )
        return _call(request, lambda c: alerts.mute(c, alert_id, until), write=True)
