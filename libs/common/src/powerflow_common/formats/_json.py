"""Strict JSON object decoding shared by the JSON-speaking vendor formats."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from powerflow_common.errors import Rejected

MAX_PAYLOAD_BYTES = 64 * 1024


def json_object(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, or Rejected with the reason it is not one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large", f"{len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("invalid_utf8", f"payload is not UTF-8: {exc}") from None
    try:
        body = msgspec.json.decode(payload)
    except RecursionError:
        raise Rejected("too_deep", "payload nesting too deep") from None
    except msgspec.DecodeError as exc:
        raise Rejected("not_json", str(exc)) from None
    if not isinstance(body, dict):
        raise Rejected("not_object", "payload must be a JSON object")
    return body


def number(value: Any, name: str) -> float | None:
    """A JSON number as float; None stays None; anything else is Rejected."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected("wrong_type", f"{name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise Rejected("not_finite", f"{name} is {result}")
    return result
