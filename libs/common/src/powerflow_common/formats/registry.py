"""The payload formats powerflow knows, by name, in the order topics are matched."""

from __future__ import annotations

from collections.abc import Sequence

from powerflow_common.errors import ConfigurationError
from powerflow_common.formats import PayloadFormat
from powerflow_common.formats.emonhub import EMONHUB
from powerflow_common.formats.esphome import ESPHOME
from powerflow_common.formats.original import ORIGINAL
from powerflow_common.formats.shelly import SHELLY
from powerflow_common.formats.tasmota import TASMOTA

FORMATS: dict[str, PayloadFormat] = {
    fmt.name: fmt for fmt in (ORIGINAL, TASMOTA, SHELLY, ESPHOME, EMONHUB)
}


def enabled_formats(names: Sequence[str]) -> tuple[PayloadFormat, ...]:
    """The formats named, in matching order; an unknown name is a configuration error."""
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ConfigurationError(
            f"unknown payload format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}"
        )
    return tuple(fmt for name, fmt in FORMATS.items() if name in names)


def default_topics(formats: Sequence[PayloadFormat]) -> tuple[str, ...]:
    """The subscriptions that cover the enabled formats' topics."""
    return tuple(dict.fromkeys(p for fmt in formats for p in fmt.topic_patterns))
