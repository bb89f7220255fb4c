"""Live readings over a WebSocket, opened with a short-lived single-use ticket."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import anyio.to_thread
from litestar import Controller, Request, WebSocket, post, websocket
from litestar.exceptions import WebSocketDisconnect
from redis.exceptions import RedisError

from powerflow_api import schemas
from powerflow_api.auth import client_address, fail_auth, principal_of, requires
from powerflow_api.keys import active_key_ids, sha256_hex
from powerflow_api.live import SHUTTING_DOWN, LiveClient, LiveLimitReached
from powerflow_api.problems import ApiError
from powerflow_api.state import ApiState, api_state
from powerflow_common.bounds import MAX_DEVICE_CODE_CHARS
from powerflow_common.validation import canonical_device_code

Req = Request[Any, Any, Any]

# Close codes: 1008 policy violation (refused, too slow, key revoked), 1001 going away.
POLICY_VIOLATION = 1008
GOING_AWAY = 1001
# A socket follows everything or a chosen few; a filter longer than this is a mistake, and
# every reading is checked against it.
MAX_LIVE_DEVICES = 1000


def ticket_key(state: ApiState, ticket: str) -> str:
    # Only the hash is stored, so a Redis dump does not hold usable tickets.
    return state.key("ticket", sha256_hex(ticket))


class LiveController(Controller):
    path = "/live"
    tags = ["live"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @post("/ticket", guards=[requires("viewer")], status_code=201)
    async def ticket(self, request: Req) -> schemas.Ticket:
        """A single-use ticket for the live socket, valid for api_ticket_ttl_s seconds."""
        state = api_state(request)
        principal = principal_of(request)
        ticket = secrets.token_urlsafe(24)
        ttl = state.settings.api_ticket_ttl_s
        try:
            await state.redis.set(ticket_key(state, ticket), str(principal.key_id), ex=ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            state.redis_failed("ticket", exc)
            raise ApiError(
                status_code=503,
                detail="Live tickets are kept in Redis, which is unreachable; retry shortly.",
                headers={"Retry-After": "5"},
            ) from exc
        state.redis_succeeded()
        return schemas.Ticket(ticket=ticket, expires_in_s=ttl, url=f"/api/v1/live?ticket={ticket}")

    @websocket("/", opt={"exclude_from_auth": True})
    async def live(self, socket: WebSocket[Any, Any, Any]) -> None:
        """Readings as JSON text frames; ?ticket=... (required), ?device=CODE (repeatable)."""
        state = api_state(socket)
        address = client_address(socket)
        if state.auth_throttle.retry_after_s(address) is not None:
            await socket.close(
                code=POLICY_VIOLATION,
                reason="too many failed authentications from this address (api_auth_failures)",
            )
            return
        ticket = socket.query_params.get("ticket") or ""
        stored: bytes | str | None = None
        if ticket:
            try:
                # GETDEL: the first socket to present a ticket consumes it, on any process.
                stored = await state.redis.getdel(ticket_key(state, ticket))
            except (RedisError, OSError, TimeoutError) as exc:
                state.redis_failed("ticket", exc)
            else:
                state.redis_succeeded()
        key_id = _key_id(stored)
        # The key may have been revoked since it took the ticket (up to api_ticket_ttl_s).
        if key_id is None or not await anyio.to_thread.run_sync(
            active_key_ids, state.engine, [key_id]
        ):
            fail_auth(state, address)
            # Closing before accepting answers the handshake with HTTP 403.
            await socket.close(code=POLICY_VIOLATION, reason="a valid, unused ticket is required")
            return
        wanted = [
            canonical_device_code(code.strip())
            for value in socket.query_params.getall("device", [])
            for code in value.split(",")
            if code.strip()
        ]
        refused = _refused_filter(wanted)
        if refused:
            await socket.close(code=POLICY_VIOLATION, reason=refused)
            return
        try:
            client = state.hub.register(frozenset(wanted) if wanted else None, key_id)
        except LiveLimitReached:
            await socket.close(
                code=POLICY_VIOLATION,
                reason=f"this key has {state.hub.max_per_key} live sockets open "
                "(limit api_live_max_per_key)",
            )
            return
        try:
            await socket.accept()
            await _pump(socket, client)
        finally:
            state.hub.unregister(client)


def _key_id(stored: bytes | str | None) -> int | None:
    """The key id a ticket was issued to (its Redis value), or None."""
    if stored is None:
        return None
    try:
        return int(stored)
    except ValueError:
        return None


def _refused_filter(codes: list[str]) -> str | None:
    """Why a ``device`` filter is refused (a WebSocket close reason, under 123 bytes), or None."""
    if len(codes) > MAX_LIVE_DEVICES:
        return f"device: at most {MAX_LIVE_DEVICES} codes"
    if any(len(code) > MAX_DEVICE_CODE_CHARS for code in codes):
        return f"device: a code has at most {MAX_DEVICE_CODE_CHARS} characters"
    return None


async def _pump(socket: WebSocket[Any, Any, Any], client: LiveClient) -> None:
    queue, dropped = client.queue, client.dropped

    async def send() -> None:
        while True:
            await socket.send_text((await queue.get()).decode())

    async def receive() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await socket.receive_data(mode="text")

    tasks = [
        asyncio.create_task(send()),
        asyncio.create_task(receive()),
        asyncio.create_task(dropped.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if dropped.is_set():
        code = GOING_AWAY if client.closed_because == SHUTTING_DOWN else POLICY_VIOLATION
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket.close(code=code, reason=client.closed_because), 2)
