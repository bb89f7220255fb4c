"""``powerflow api``: serve the app with uvicorn; access logs are ours (no query strings)."""

from __future__ import annotations

import logging
import re

import uvicorn

from powerflow_api.app import create_app
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)


class RedactQueryStrings(logging.Filter):
    """Drop query strings from uvicorn's log lines: live tickets travel in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_strip_query(a) for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _strip_query(record.msg)
        return True


def _strip_query(value: object) -> object:
    if isinstance(value, str) and "?" in value:
        return _QUERY.sub("?<redacted>", value)
    return value


_QUERY = re.compile(r"\?[^\s\"']*")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow api``."""
    # uvicorn.error logs each WebSocket handshake with its full path and query string.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactQueryStrings())
    app = create_app(settings)
    log.info("api_starting", url=f"http://{settings.api_host}:{settings.api_port}")
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        # uvicorn's access log prints query strings, where live tickets travel; ours does not.
        access_log=False,
        log_config=None,
        # X-Forwarded-For only from the proxies named in api_trusted_proxies: anyone else
        # could name any address and dodge the failed-authentication limit per address.
        proxy_headers=bool(settings.api_trusted_proxies),
        forwarded_allow_ips=list(settings.api_trusted_proxies) or None,
        ws_max_size=64 * 1024,
    )
