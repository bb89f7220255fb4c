"""Enrolment from the API (the dashboard): the steps of ``powerflow devices enroll|revoke``.

The same domain functions as the CLI (``powerflow_common.enrolment``), so a device enrolled
here is the device the CLI would have made, and the answer holds what ``enroll --json``
prints. Everything here blocks (MQTT round trips to the broker, database): the handlers run
it in a worker thread. Failures are ``EnrolmentError``\\ s whose ``reason`` the problem
handler maps to a status (``ENROLMENT_STATUS``); a broker that is not configured or cannot
be reached is one of them, never a 500.

The password exists in the ``Enrolment`` returned and in the response body only: nothing
here logs it, and the access log writes the path and status, never a body.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from powerflow_common.broker_admin import AccountAdmin, broker_admin
from powerflow_common.device_setup import DeviceBroker, enrolment_json, setup_text
from powerflow_common.enrolment import (
    Enrolment,
    Revocation,
    enroll_device,
    enrolment_code,
    payload_formats,
    revoke_device,
)
from powerflow_common.errors import EnrolmentError, PowerflowError, Rejected
from powerflow_common.settings import Settings
from powerflow_common.validation import check_device_code

# Reasons (EnrolmentError.reason) and the HTTP status each is answered with.
BROKER_NOT_CONFIGURED = "broker_not_configured"
BROKER_UNAVAILABLE = "broker_unavailable"
ENROLMENT_STATUS = {
    "invalid_device_code": 422,
    "reserved_code": 422,
    "unknown_format": 422,
    "bad_limit": 400,
    "unknown_device": 404,
    "busy": 409,  # another enrolment of the same code is running
    BROKER_NOT_CONFIGURED: 503,
    BROKER_UNAVAILABLE: 503,
    "broker_failed": 503,
    "database_failed": 503,
}
# 503s that retrying fixes (not a missing configuration): sent with this Retry-After.
RETRY_AFTER_S = 5


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    """What to put on a device for one of its formats."""

    format: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Enrolled:
    """An enrolment as the API answers it: ``enroll --json``'s object, and the setup texts."""

    enrolment: Enrolment
    broker: DeviceBroker
    setup: list[DeviceSetup]
    # Formats this deployment's POWERFLOW_FORMATS does not decode: their readings would be
    # ignored until enabled (the CLI prints the same warning).
    undecoded_formats: list[str]

    @property
    def warnings(self) -> list[str]:
        """What the person enrolling should know, as sentences."""
        return [
            f"this deployment does not decode {name} (POWERFLOW_FORMATS): enable it or "
            "these readings are ignored"
            for name in self.undecoded_formats
        ]

    def as_json(self) -> dict[str, object]:
        """``powerflow devices enroll --json``'s object (password included)."""
        return enrolment_json(self.enrolment, self.broker)


@contextmanager
def _admin(settings: Settings) -> Iterator[AccountAdmin]:
    """The broker's admin, connected; an EnrolmentError saying why it cannot be."""
    if settings.broker_admin_url is None:
        raise EnrolmentError(
            BROKER_NOT_CONFIGURED,
            "Enrolment needs the broker's admin account, and this API has none: set "
            "POWERFLOW_BROKER_ADMIN_URL (mqtt://powerflow-admin:PASSWORD@HOST:PORT; "
            "`powerflow broker` says where the password is) and restart the API.",
        )
    try:
        admin = broker_admin(settings, timeout_s=settings.api_broker_timeout_s)
        admin.__enter__()
    except PowerflowError as exc:  # a bad URL, unreachable, refused, silent
        raise EnrolmentError(
            BROKER_UNAVAILABLE,
            f"The broker's admin could not be reached, so nothing was changed: {exc}",
        ) from None
    try:
        yield admin
    finally:
        admin.__exit__(None, None, None)


def enrol(
    settings: Settings,
    engine: Engine,
    code: str,
    *,
    formats: Sequence[str],
    legacy: bool,
    by: str,
) -> Enrolled:
    """Enrol (or enrol again, rotating the password) as ``powerflow devices enroll`` does.

    A bad code or format is refused before the broker or the database is touched.
    """
    enrolment_code(code)
    chosen = [f.name for f in payload_formats(formats)]
    with _admin(settings) as admin:
        enrolment = enroll_device(engine, admin, code, formats=chosen, legacy=legacy, by=by)
    broker = DeviceBroker.from_settings(settings)
    setup = []
    for name in enrolment.formats:
        text = setup_text(name, enrolment, broker)
        if text is not None:
            setup.append(DeviceSetup(name, *text))
    undecoded = [n for n in enrolment.formats if n not in settings.formats]
    return Enrolled(enrolment, broker, setup, undecoded)


def revoke(settings: Settings, engine: Engine, code: str) -> Revocation:
    """Remove the device's broker access at once (its open connection is closed), then
    record it, as ``powerflow devices revoke`` does."""
    try:  # refused before the broker is asked (a reserved code is merely unknown)
        check_device_code(code)
    except Rejected as exc:
        raise EnrolmentError("invalid_device_code", exc.detail) from None
    with _admin(settings) as admin:
        return revoke_device(engine, admin, code)
