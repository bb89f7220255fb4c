"""Limit/offset paging of lists that grow with the fleet (devices, latest readings)."""

from __future__ import annotations

from typing import TypeVar

from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from powerflow_api.problems import ApiError
from powerflow_common.bounds import MAX_OFFSET
from powerflow_common.settings import Settings

LIMIT = Parameter(
    default=None,
    ge=1,
    description="At most this many, ordered by device code (default and maximum: "
    "api_list_page_max, 1000); a page shorter than the limit is the last one",
)
OFFSET = Parameter(default=0, ge=0, le=MAX_OFFSET, description="Skip this many")


T = TypeVar("T")

TOTAL_HEADER = "X-Total-Count"
TOTAL = ResponseHeader(
    name=TOTAL_HEADER,
    description="How many there are in all (page with offset until you have them)",
    documentation_only=True,
)


def page(items: list[T], total: int) -> Response[list[T]]:
    """A page of ``items`` with the total count in ``X-Total-Count``."""
    return Response(items, headers={TOTAL_HEADER: str(total)})


def page_limit(settings: Settings, limit: int | None) -> int:
    """The page size asked for, or the maximum; 400 naming the setting when above it."""
    if limit is None:
        return settings.api_list_page_max
    if limit > settings.api_list_page_max:
        raise ApiError(
            status_code=400,
            detail=f"Invalid request: limit: must be at most {settings.api_list_page_max} "
            "(setting api_list_page_max); page with offset.",
            extra=[{"key": "limit", "message": f"at most {settings.api_list_page_max}"}],
        )
    return limit
