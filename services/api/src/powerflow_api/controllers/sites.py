"""Sites: list, get, create and update (timezone, region, floor area)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, PathParameter
from msgspec import UNSET, structs
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from powerflow_api import schemas
from powerflow_api.auth import requires
from powerflow_api.data import sites_t, to_site
from powerflow_api.problems import ApiError
from powerflow_api.state import api_state
from powerflow_common import daily_site
from powerflow_common.bounds import MAX_ROW_ID, MIN_ROW_ID
from powerflow_common.db.dialect import begin_write
from powerflow_common.periods import validate_timezone

Req = Request[Any, Any, Any]
SiteId = Annotated[int, PathParameter(description="The site id", ge=MIN_ROW_ID, le=MAX_ROW_ID)]


def _check_timezone(tz: str) -> None:
    try:
        validate_timezone(tz)
    except ValueError as exc:
        raise ApiError(status_code=422, detail=str(exc)) from exc


def _duplicate(name: str) -> ApiError:
    return ApiError(
        status_code=409, detail=f"A site named {name!r} exists already; choose another name."
    )


def _get(conn: Connection, site_id: int) -> schemas.Site:
    row = conn.execute(select(sites_t).where(sites_t.c.id == site_id)).first()
    if row is None:
        raise NotFoundException(f"No site with id {site_id}; list them with GET /api/v1/sites.")
    return to_site(row)


class SiteController(Controller):
    path = "/sites"
    tags = ["sites"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("viewer")], sync_to_thread=True)
    def list_sites(self, request: Req) -> list[schemas.Site]:
        """Every site."""
        with api_state(request).engine.connect() as conn:
            rows = conn.execute(select(sites_t).order_by(sites_t.c.id)).all()
        return [to_site(r) for r in rows]

    @get("/{site_id:int}", guards=[requires("viewer")], sync_to_thread=True)
    def get_site(self, request: Req, site_id: SiteId) -> schemas.Site:
        """One site."""
        with api_state(request).engine.connect() as conn:
            return _get(conn, site_id)

    @post("/", guards=[requires("operator")], sync_to_thread=True)
    def create_site(self, request: Req, data: JSONBody[schemas.SiteCreate]) -> schemas.Site:
        """Create a site (operator); its timezone cuts days, weeks and months."""
        _check_timezone(data.timezone)
        try:
            with begin_write(api_state(request).engine) as conn:
                result = conn.execute(
                    sites_t.insert().values(**structs.asdict(data), created_at=datetime.now(UTC))
                )
                new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                return _get(conn, new_id)
        except IntegrityError as exc:
            raise _duplicate(data.name) from exc

    @patch("/{site_id:int}", guards=[requires("operator")], sync_to_thread=True)
    def update_site(
        self, request: Req, site_id: SiteId, data: JSONBody[schemas.SiteUpdate]
    ) -> schemas.Site:
        """Change a site's name, timezone, region or floor area (operator)."""
        values = {k: v for k, v in structs.asdict(data).items() if v is not UNSET}
        if "timezone" in values:
            _check_timezone(values["timezone"])
        try:
            with begin_write(api_state(request).engine) as conn:
                _get(conn, site_id)
                if values:
                    conn.execute(update(sites_t).where(sites_t.c.id == site_id).values(**values))
                if "timezone" in values:  # its days are cut elsewhere now: rebuilt when read
                    daily_site.invalidate_sites(conn, [site_id])
                return _get(conn, site_id)
        except IntegrityError as exc:
            raise _duplicate(str(values.get("name"))) from exc
