"""Structured logging (structlog): JSON lines by default, readable in a terminal on request.

Every line passes :func:`redact` last: a password in a URL's userinfo
(``redis://:pw@``, ``nats://user:pw@``, ``mysql+pymysql://user:pw@``) and the value of every
secret setting (``register_secrets``) never reach the output, whoever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "***"
# scheme://user:password@ -> scheme://user:***@ (the user name stays: it says who connected).
# The password runs to the next "@" on the line, so one with a raw "/" or ":" is still hidden.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s@]*@")
# Shorter secrets would mask ordinary words in log lines; they are no secret anyway.
MIN_SECRET_CHARS = 4
# Containers nest a few levels at most in our events; deeper ones are stringified and redacted.
_MAX_DEPTH = 8

_secrets: tuple[str, ...] = ()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these exact values (the secret settings) in every later log line."""
    global _secrets
    wanted = {v for v in (*_secrets, *values) if len(v) >= MIN_SECRET_CHARS}
    # Longest first, so a secret containing another is masked whole.
    _secrets = tuple(sorted(wanted, key=len, reverse=True))


def redact_text(text: str) -> str:
    """``text`` with URL passwords and registered secrets replaced by ``***``."""
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {k: _redact_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [_redact_value(v, depth + 1) for v in value]
    # Anything else is rendered with str() by the renderer: redact that text instead.
    text = str(value)
    cleaned = redact_text(text)
    return value if cleaned == text else cleaned


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact every value of the event (the message and traceback too)."""
    for key, value in event_dict.items():
        event_dict[key] = _redact_value(value)
    return event_dict


# A service configures logging once, so each module's logger is resolved once and then kept
# (structlog's cache). Test processes configure it many times (in-process CLI commands) and
# capture events with structlog.testing.capture_logs: tests/conftest.py turns the cache off so
# a logger first used under one configuration does not keep it for the rest of the run.
CACHE_LOGGERS_ON_FIRST_USE = True


def configure_logging(
    level: str = "info", fmt: str = "json", *, secrets: Iterable[str] = ()
) -> None:
    """Route structlog and the standard library's logging to stderr in one format.

    ``secrets``: values to mask in every line (``Settings.secret_values()``).
    """
    register_secrets(secrets)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=CACHE_LOGGERS_ON_FIRST_USE,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                # Last before rendering: the traceback text is redacted too.
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # nats-py and paho log every reconnect attempt at error level; ours say it once, with context.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    # httpx logs "HTTP Request: POST <full URL>" at INFO for every request: a webhook URL often
    # carries the receiver's token, and one line per delivery says nothing ours do not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named for its module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
