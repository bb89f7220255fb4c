"""The errors powerflow raises on purpose; one module, like dramatiq's."""

from __future__ import annotations


class PowerflowError(Exception):
    """Base of every error raised on purpose by powerflow."""


class Rejected(PowerflowError):
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

    Examples: a topic no enabled format claims (a shared broker carries other systems'
    traffic), a retained state replayed on subscribe, an event that carries no measurement.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigurationError(PowerflowError):
    """A setting or a deployment is wrong in a way a person must fix."""


class CorrectionRefused(PowerflowError):
    """An operator correction that cannot be applied as asked; nothing was changed.

    ``reason`` is machine-readable (``[a-z_]+``); ``detail`` tells a person what to fix.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CorrectionTargetMissing(CorrectionRefused):
    """The device or the stored reading a correction names does not exist."""


class EnrolmentError(PowerflowError):
    """A device enrolment or revocation that could not be done as asked.

    ``reason`` is machine-readable (``[a-z_]+``); ``detail`` tells a person what to do.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
