"""Who the caller is: the name and role of the key, so a client can show what it may do."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get

from powerflow_api.auth import principal_of, requires


class Me(msgspec.Struct, frozen=True):
    """The calling key's name and role (never the key)."""

    name: str
    role: str


class MeController(Controller):
    path = "/me"
    tags = ["keys"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("device")])
    async def me(self, request: Request[Any, Any, Any]) -> Me:
        """The name and role of the key this request carries (any role)."""
        principal = principal_of(request)
        return Me(name=principal.name, role=principal.role)
