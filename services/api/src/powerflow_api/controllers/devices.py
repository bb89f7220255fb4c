"""Devices: list, get, update (name, site, location, meter role), admit, enrol, revoke."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, Parameter, PathParameter
from msgspec import UNSET, structs
from sqlalchemy import select, update

from powerflow_api import schemas
from powerflow_api.auth import principal_of, requires
from powerflow_api.data import device_count, device_rows, devices_t, sites_t, to_device
from powerflow_api.enrolments import enrol, revoke
from powerflow_api.paging import LIMIT, OFFSET, TOTAL, page, page_limit
from powerflow_api.problems import ApiError
from powerflow_api.readings import as_utc
from powerflow_api.state import api_state
from powerflow_common.admission import UnknownDevices, admit_devices
from powerflow_common.bounds import MAX_DEVICE_CODE_CHARS, MAX_ROW_ID, MIN_ROW_ID
from powerflow_common.db.dialect import begin_write
from powerflow_common.queries import PlacementError, counted_now, record_placement
from powerflow_common.validation import canonical_device_code

Req = Request[Any, Any, Any]
# The answer holding a device's password must not stay in a browser's or a proxy's cache.
NO_STORE = {"Cache-Control": "no-store"}
Code = Annotated[
    str,
    PathParameter(
        description="The device code, e.g. 1001 or A4:CF:12:9B:00:01",
        max_length=MAX_DEVICE_CODE_CHARS,
    ),
]


def not_found(code: str) -> NotFoundException:
    return NotFoundException(f"No device with code {code!r}; list them with GET /api/v1/devices.")


class DeviceController(Controller):
    path = "/devices"
    tags = ["devices"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("viewer")], sync_to_thread=True, response_headers=[TOTAL])
    def list_devices(
        self,
        request: Req,
        site_id: int | None = Parameter(
            default=None, ge=MIN_ROW_ID, le=MAX_ROW_ID, description="Only this site's devices"
        ),
        limit: int | None = LIMIT,
        offset: int = OFFSET,
    ) -> Response[list[schemas.Device]]:
        """Devices by code with last reading time, online state and current power, paged.

        ``X-Total-Count`` says how many there are; page with ``offset``.
        """
        state = api_state(request)
        size = page_limit(state.settings, limit)
        with state.engine.connect() as conn:
            rows = device_rows(conn, site_id=site_id, limit=size, offset=offset)
            total = device_count(conn, site_id=site_id)
            counted = counted_now(conn)
        threshold = state.settings.api_online_threshold_s
        return page([to_device(r, threshold, counted=r.id in counted) for r in rows], total)

    @get("/{code:str}", guards=[requires("viewer")], sync_to_thread=True)
    def get_device(self, request: Req, code: Code) -> schemas.Device:
        """One device by its code."""
        code = canonical_device_code(code)
        state = api_state(request)
        with state.engine.connect() as conn:
            rows = device_rows(conn, code=code)
            counted = counted_now(conn)
        if not rows:
            raise not_found(code)
        return to_device(
            rows[0], state.settings.api_online_threshold_s, counted=rows[0].id in counted
        )

    @patch("/{code:str}", guards=[requires("operator")], sync_to_thread=True)
    def update_device(
        self, request: Req, data: JSONBody[schemas.DeviceUpdate], code: Code
    ) -> schemas.Device:
        """Change a device's name, site, location or meter role (operator).

        A site or meter-role change is recorded in the device's site history from now on
        (its past stays on the old site), or from ``effective_from`` when given.
        """
        code = canonical_device_code(code)
        state = api_state(request)
        values = {k: v for k, v in structs.asdict(data).items() if v is not UNSET}
        effective_from = values.pop("effective_from", None)
        if effective_from is not None and not {"site_id", "meter_role"} & values.keys():
            raise ApiError(
                status_code=422,
                detail="effective_from dates a site_id or meter_role change; send one of them.",
            )
        with begin_write(state.engine) as conn:
            if values.get("site_id") is not None:
                exists = conn.execute(
                    select(sites_t.c.id).where(sites_t.c.id == values["site_id"])
                ).first()
                if exists is None:
                    raise ApiError(
                        status_code=422,
                        detail=f"No site with id {values['site_id']}; create it first "
                        "with POST /api/v1/sites or list them with GET /api/v1/sites.",
                    )
            if {"site_id", "meter_role"} & values.keys():
                try:
                    record_placement(
                        conn,
                        code,
                        site_id=values.get("site_id", UNSET),
                        meter_role=values.get("meter_role", UNSET),
                        effective_from=None if effective_from is None else as_utc(effective_from),
                        by=principal_of(request).name,
                    )
                except PlacementError as exc:
                    raise ApiError(status_code=422, detail=str(exc)) from exc
            if values:
                conn.execute(update(devices_t).where(devices_t.c.code == code).values(**values))
            rows = device_rows(conn, code=code)
            counted = counted_now(conn)
        if not rows:
            raise not_found(code)
        return to_device(
            rows[0], state.settings.api_online_threshold_s, counted=rows[0].id in counted
        )

    @post("/{code:str}/admission", guards=[requires("admin")], sync_to_thread=True, status_code=200)
    def admit_device(self, request: Req, code: Code) -> schemas.Admission:
        """Admit a device waiting for admission (admin): from now on it counts in totals and
        reports, with its whole history. Admitting an admitted device changes nothing."""
        code = canonical_device_code(code)
        state = api_state(request)
        try:
            [done] = admit_devices(state.engine, [code], by=principal_of(request).name)
        except UnknownDevices as exc:
            raise NotFoundException(str(exc)) from exc
        with state.engine.connect() as conn:
            rows = device_rows(conn, code=code)
            counted = counted_now(conn)
        if not rows:  # deleted in between
            raise not_found(code)
        device = to_device(
            rows[0], state.settings.api_online_threshold_s, counted=rows[0].id in counted
        )
        return schemas.Admission(device=device, newly_admitted=done.newly)

    @post(
        "/{code:str}/enrolment",
        guards=[requires("admin")],
        sync_to_thread=True,  # broker round trips and database writes: a worker thread
        status_code=201,
    )
    def enrol_device(
        self, request: Req, code: Code, data: JSONBody[schemas.EnrolmentRequest | None] = None
    ) -> Response[schemas.EnrolmentCreated]:
        """Enrol a device (admin): its own broker account and topics, the password shown once.

        The answer is what ``powerflow devices enroll --json`` prints (username, password,
        client_id, topic(s), broker host and ports), plus ``setup``: what to put on the
        device for each format (the firmware's config.json, Tasmota/Shelly/ESPHome/emonhub
        lines). Enrolling an enrolled device again rotates its password (the old one stops
        working at once). The device is created if new, and admitted. 503 when the broker's
        admin is not configured or cannot be reached (nothing is changed then).
        """
        body = data or schemas.EnrolmentRequest()
        state = api_state(request)
        done = enrol(
            state.settings,
            state.engine,
            code,
            formats=body.formats,
            legacy=body.legacy,
            by=principal_of(request).name,
        )
        created = msgspec.convert(
            {
                **done.as_json(),
                "setup": [
                    {"format": s.format, "title": s.title, "text": s.text} for s in done.setup
                ],
                "warnings": done.warnings,
            },
            schemas.EnrolmentCreated,
        )
        return Response(created, status_code=201, headers=NO_STORE)

    @delete(
        "/{code:str}/enrolment", guards=[requires("admin")], sync_to_thread=True, status_code=200
    )
    def revoke_device(self, request: Req, code: Code) -> schemas.RevocationResult:
        """Revoke a device's broker access (admin): its account is removed and a connected
        device is disconnected at once. Its stored readings stay and keep counting; enrol it
        again to give it new credentials. Revoking again is harmless (``account_removed``
        false). 404 when there is neither such a device nor such an account."""
        state = api_state(request)
        done = revoke(state.settings, state.engine, code)
        with state.engine.connect() as conn:
            rows = device_rows(conn, code=done.code)
            counted = counted_now(conn)
        device = (
            to_device(rows[0], state.settings.api_online_threshold_s, counted=rows[0].id in counted)
            if rows
            else None
        )
        return schemas.RevocationResult(
            code=done.code,
            account_removed=done.account_removed,
            revoked_at=done.revoked_at,
            device=device,
        )
