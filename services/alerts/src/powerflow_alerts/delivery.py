"""Delivery of the outbox: signed webhooks and e-mail, retried with backoff, at least once.

An event is sent until a channel accepts it (a 2xx answer, an SMTP server's acceptance); a
failure moves ``next_attempt_at`` out by a jittered, growing delay (powerflow_common.backoff)
and is retried for ever, counted and logged; the backlog is a metric. A crash after sending
and before marking it delivered sends it again: receivers deduplicate on ``webhook-id``
(e-mail: the ``Message-ID`` header), which is the same event id on every attempt.

Webhooks follow Standard Webhooks (standardwebhooks.com): headers ``webhook-id``,
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``) with the shared secret ``whsec_<base64>``; the signature is made
by the ``standardwebhooks`` library, so receivers can verify with any of its ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import httpx
from sqlalchemy import Engine
from standardwebhooks.webhooks import Webhook

from powerflow_alerts import metrics
from powerflow_common.alerts_store import (
    OutboxEvent,
    claim_due_events,
    mark_delivered,
    mark_failed,
    outbox_backlog,
)
from powerflow_common.backoff import jittered_delay
from powerflow_common.errors import ConfigurationError, Retryable
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)


class DeliveryFailed(Retryable):
    """A channel refused or could not be reached; the event is retried later."""


def check_channels(settings: Settings) -> None:
    """Refuse half-configured channels at start (ConfigurationError says which setting)."""
    if settings.alerts_webhook_url:
        url = settings.alerts_webhook_url.get_secret_value()
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError("POWERFLOW_ALERTS_WEBHOOK_URL must be an http(s) URL")
        secret = settings.alerts_webhook_secret
        if secret is None:
            raise ConfigurationError(
                "POWERFLOW_ALERTS_WEBHOOK_URL is set without POWERFLOW_ALERTS_WEBHOOK_SECRET: "
                "webhooks are always signed"
            )
        try:
            Webhook(secret.get_secret_value())
        except Exception:
            raise ConfigurationError(
                "POWERFLOW_ALERTS_WEBHOOK_SECRET must be whsec_ followed by base64"
            ) from None
    mail = (settings.alerts_smtp_host, settings.alerts_email_from, settings.alerts_email_to)
    if any(mail) and not all(mail):
        raise ConfigurationError(
            "e-mail needs POWERFLOW_ALERTS_SMTP_HOST, POWERFLOW_ALERTS_EMAIL_FROM and "
            "POWERFLOW_ALERTS_EMAIL_TO together"
        )


def configured_channels(settings: Settings) -> list[str]:
    """The channels events are written for: those with their settings present."""
    channels = []
    if settings.alerts_webhook_url:
        channels.append("webhook")
    if settings.alerts_smtp_host and settings.alerts_email_from and settings.alerts_email_to:
        channels.append("email")
    return channels


def event_body(event: OutboxEvent) -> str:
    """The JSON body sent for an event: the same bytes on every attempt (they are signed)."""
    return json.dumps(event.payload, sort_keys=True, separators=(",", ":"))


def signed_headers(secret: str, msg_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    signature = Webhook(secret).sign(msg_id, at, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


class Sender:
    """Sends one event on its channel; raises DeliveryFailed with a reason (no secrets)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=settings.alerts_delivery_timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, event: OutboxEvent) -> None:
        if event.channel == "webhook":
            await self._webhook(event)
        elif event.channel == "email":
            await self._email(event)
        else:
            raise DeliveryFailed(f"unknown channel {event.channel!r}")

    async def _webhook(self, event: OutboxEvent) -> None:
        url_setting = self._settings.alerts_webhook_url
        url = url_setting.get_secret_value() if url_setting is not None else ""
        secret = self._settings.alerts_webhook_secret
        if not url or secret is None:
            raise DeliveryFailed("POWERFLOW_ALERTS_WEBHOOK_URL and _SECRET must both be set")
        body = event_body(event)
        headers = signed_headers(secret.get_secret_value(), event.event_id, datetime.now(UTC), body)
        try:
            response = await self._http.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"webhook: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"webhook answered {response.status_code}")

    async def _email(self, event: OutboxEvent) -> None:
        s = self._settings
        if not (s.alerts_smtp_host and s.alerts_email_from and s.alerts_email_to):
            raise DeliveryFailed("SMTP host, from and to must be set")
        alert = event.payload.get("alert", {})
        message = EmailMessage()
        message["From"] = s.alerts_email_from
        message["To"] = ", ".join(s.alerts_email_to)
        rule_name, subject = alert.get("rule_name", ""), alert.get("subject", "")
        message["Subject"] = _header_value(
            f"[powerflow] {rule_name}: {event.transition} on {subject}"
        )
        # The event id in the Message-ID: a resend after a crash is recognisably the same mail.
        domain = s.alerts_email_from.rpartition("@")[2] or "powerflow"
        message["Message-ID"] = make_msgid(idstring=event.event_id, domain=domain)
        message["X-Powerflow-Event-Id"] = event.event_id
        message.set_content(json.dumps(event.payload, indent=2, sort_keys=True))
        password = s.alerts_smtp_password
        try:
            await aiosmtplib.send(
                message,
                hostname=s.alerts_smtp_host,
                port=s.alerts_smtp_port,
                username=s.alerts_smtp_user,
                password=None if password is None else password.get_secret_value(),
                use_tls=s.alerts_smtp_tls == "tls",
                start_tls=s.alerts_smtp_tls == "starttls",
                timeout=s.alerts_delivery_timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"smtp: {type(exc).__name__}") from None


def _header_value(value: str) -> str:
    """``value`` with its control characters (a newline in a rule name) made spaces.

    EmailMessage refuses a header value with CR or LF (ValueError), and any control
    character has no place in a header line.
    """
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)


async def deliver_due(
    engine: Engine, sender: Sender, settings: Settings, now: datetime | None = None
) -> int:
    """Send every due event once; returns how many were delivered."""
    now = now or datetime.now(UTC)
    claim = timedelta(seconds=settings.alerts_delivery_claim_s)
    events = await asyncio.to_thread(
        claim_due_events, engine, now, limit=settings.alerts_outbox_batch, claim=claim
    )
    delivered = 0
    oldest_s = 0.0
    for event in events:
        metrics.DELIVERIES_ATTEMPTED.labels(event.channel).inc()
        try:
            try:
                await sender.send(event)
            except DeliveryFailed:
                raise
            except Exception as exc:
                # Any error of one send is a failed attempt of that event, retried with its
                # backoff: raised, it would leave the event unmarked (retried every round
                # forever) and the rest of the batch unsent. The type only: a message may
                # carry a secret (a URL with a token).
                raise DeliveryFailed(f"{event.channel}: unexpected {type(exc).__name__}") from exc
        except DeliveryFailed as exc:
            metrics.DELIVERIES_FAILED.labels(event.channel).inc()
            delay = jittered_delay(
                event.attempts,
                base_s=settings.alerts_delivery_backoff_base_s,
                cap_s=settings.alerts_delivery_backoff_cap_s,
            )
            oldest_s = max(oldest_s, (now - event.created_at).total_seconds())
            log.warning(
                "alert_delivery_failed",
                channel=event.channel,
                event_id=event.event_id,
                attempt=event.attempts + 1,
                error=str(exc),
                retry_in_s=round(delay, 2),
            )
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            await asyncio.to_thread(mark_failed, engine, event.id, retry_at, str(exc))
            continue
        await asyncio.to_thread(mark_delivered, engine, event.id, datetime.now(UTC))
        delivered += 1
        log.info("alert_delivered", channel=event.channel, event_id=event.event_id)
    metrics.OUTBOX_OLDEST_SECONDS.set(oldest_s)
    return delivered


def _backlog(engine: Engine) -> int:
    with engine.connect() as conn:
        return outbox_backlog(conn)


async def outbox_loop(
    engine: Engine,
    sender: Sender,
    settings: Settings,
    stop: asyncio.Event,
    wake: asyncio.Event,
    on_error: Callable[[BaseException], Awaitable[None]] | None = None,
) -> None:
    """Deliver due events whenever ``wake`` is set and at least every outbox_poll_s."""
    while not stop.is_set():
        wake.clear()
        try:
            while await deliver_due(engine, sender, settings):
                pass
            metrics.OUTBOX_BACKLOG.set(await asyncio.to_thread(_backlog, engine))
        except Exception as exc:  # the database away: said, retried at the next round
            log.error("alert_outbox_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            if on_error is not None:
                await on_error(exc)
        with contextlib.suppress(TimeoutError):
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
            try:
                await asyncio.wait(
                    waits, timeout=settings.alerts_outbox_poll_s, return_when="FIRST_COMPLETED"
                )
            finally:
                for task in waits:
                    task.cancel()
