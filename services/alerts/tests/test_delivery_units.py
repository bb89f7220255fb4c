from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from powerflow_alerts.delivery import check_channels, configured_channels, signed_headers
from powerflow_common.errors import ConfigurationError
from powerflow_common.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_signed_headers_follow_standard_webhooks_and_verify() -> None:
    # Hand example: id "alert-1-raised", 2026-11-29T12:00:00Z is 1795953600.
    at = datetime(2026, 11, 29, 12, tzinfo=UTC)
    headers = signed_headers(SECRET, "alert-1-raised", at, '{"a":1}')
    assert headers["webhook-id"] == "alert-1-raised"
    assert headers["webhook-timestamp"] == "1795953600"
    assert headers["webhook-signature"].startswith("v1,")
    verifier = Webhook(SECRET)
    # The library checks the time against now: sign now to verify.
    now = datetime.now(UTC)
    fresh = signed_headers(SECRET, "alert-1-raised", now, '{"a":1}')
    assert verifier.verify('{"a":1}', fresh) == {"a": 1}


def test_channels_are_those_with_their_settings_and_half_settings_refuse_to_start() -> None:
    assert configured_channels(settings()) == []
    full = settings(
        alerts_webhook_url="https://hooks.example.test/p",
        alerts_webhook_secret=SECRET,
        alerts_smtp_host="smtp.example.test",
        alerts_email_from="pf@example.test",
        alerts_email_to="ops@example.test",
    )
    check_channels(full)
    assert configured_channels(full) == ["webhook", "email"]
    for bad, words in [
        ({"alerts_webhook_url": "https://h.example.test/"}, "SECRET"),
        ({"alerts_webhook_url": "ftp://h", "alerts_webhook_secret": SECRET}, "http"),
        ({"alerts_webhook_url": "https://h/", "alerts_webhook_secret": "whsec_!!"}, "base64"),
        ({"alerts_smtp_host": "smtp.example.test"}, "EMAIL_FROM"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            check_channels(settings(**bad))
