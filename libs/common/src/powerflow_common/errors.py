"""The errors powerflow raises on purpose: one base, and groups by what a caller does about it.

Every exception class of powerflow derives from :class:`PowerflowError` (a test walks our
packages to hold it), through one of the groups below when one fits:

- :class:`Retryable`: the same call may succeed later (a lock held, a service busy): retry it
  with backoff, or let redelivery do it.
- :class:`InvalidInput`: the input can never succeed as given: reject it (a 4xx, a REJECTED
  record, a failed job), never retry it.
- :class:`NotFound`: what the input names does not exist: say so (a 404).
- :class:`Unavailable`: a capability or a setting is missing or broken, and nothing the caller
  sends fixes it: report it for a person to fix (a 503, a failed job, an exit with the
  message).

A class lives next to the code that raises it (its fields belong to that code), deriving from
its group here; a class callers also catch as ``LookupError``/``ValueError``/``RuntimeError``
keeps that as its second base. Migrations are frozen history and keep their own classes.
"""

from __future__ import annotations


class PowerflowError(Exception):
    """Base of every error raised on purpose by powerflow."""


class Retryable(PowerflowError):
    """Transient: the same call may succeed later; retry with backoff (or redeliver)."""


class InvalidInput(PowerflowError):
    """Input that can never succeed as given: reject it, do not retry."""


class NotFound(PowerflowError):
    """What the input names does not exist: say so."""


class Unavailable(PowerflowError):
    """A capability, a dependency or a setting is missing or broken: report it to a person."""


class Rejected(InvalidInput):
    """Input that can never be stored; it goes to the REJECTED stream with ``reason``.

    ``reason`` is machine-readable (``[a-z_]+``, also a subject token); ``detail`` is for people.
    """

    def __init__(self, reason: str, detail: str, *, format_name: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.format_name = format_name


class Ignored(PowerflowError):
    """A message with nothing to store and nothing wrong: counted, acked, not dead-lettered.

    No group: nothing is wrong, so there is nothing to retry, reject or report.

    Examples: a topic no enabled format claims (a shared broker carries other systems'
    traffic), a retained state replayed on subscribe, an event that carries no measurement.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigurationError(Unavailable):
    """A setting or a deployment is wrong in a way a person must fix."""


class CorrectionRefused(InvalidInput):
    """An operator correction that cannot be applied as asked; nothing was changed.

    ``reason`` is machine-readable (``[a-z_]+``); ``detail`` tells a person what to fix.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CorrectionTargetMissing(CorrectionRefused, NotFound):
    """The device or the stored reading a correction names does not exist."""


class EnrolmentError(PowerflowError):
    """A device enrolment or revocation that could not be done as asked.

    No one group: ``reason`` tells a bad request (an unknown device) from a broker that is
    not configured or did not answer.

    ``reason`` is machine-readable (``[a-z_]+``); ``detail`` tells a person what to do.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerError(Unavailable):
    """The broker refused or did not answer an account change; the message says which.

    Here rather than beside Mosquitto's admin (broker_admin) so that the embedded broker's
    admin can raise it without importing that module, which imports it.
    """
