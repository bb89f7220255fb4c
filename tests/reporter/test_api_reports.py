"""Reports over HTTP: request (operator), follow, download from the API, made by a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_report_testing import PERIOD_END, PERIOD_FIRST, seed_site
from sqlalchemy import Engine

from pf_testing import delete_namespace_streams, wait_for
from powerflow_api.app import create_app
from powerflow_api.keys import create_key
from powerflow_common.settings import Settings
from powerflow_reporter.service import ReporterWorker

# Their SQL differs per engine (db.sqltime): run on SQLite and on MariaDB.
pytestmark = pytest.mark.both_backends


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_report_requested_over_http_is_made_and_downloadable(
    engine: Engine,
    report_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], ReporterWorker],
) -> None:
    settings = report_settings(anthropic_api_key=None)  # offline: the template narrative
    site_id, _ = seed_site(engine)
    operator, _ = create_key(engine, "op", "operator")
    viewer, _ = create_key(engine, "view", "viewer")
    try:
        check_reports_over_http(settings, engine, start_worker, site_id, operator, viewer)
    finally:
        delete_namespace_streams(settings)  # the API creates its namespace's streams


def check_reports_over_http(
    settings: Settings,
    engine: Engine,
    start_worker: Callable[[Settings], ReporterWorker],
    site_id: int,
    operator: str,
    viewer: str,
) -> None:
    body = {
        "period_start": PERIOD_FIRST.date().isoformat(),
        "period_end": PERIOD_END.date().isoformat(),
        "scope": "site",
        "site_id": site_id,
        "language": "ko",
    }
    with TestClient(create_app(settings, engine=engine), timeout=10) as client:
        assert client.post("/api/v1/reports", json=body, headers=bearer(viewer)).status_code == 403
        backwards = {**body, "period_end": body["period_start"]}
        refused = client.post("/api/v1/reports", json=backwards, headers=bearer(operator))
        assert refused.status_code == 422, refused.text
        assert "period_end" in refused.json()["detail"]

        created = client.post("/api/v1/reports", json=body, headers=bearer(operator))
        assert created.status_code == 202, created.text
        report = created.json()
        assert report["status"] == "queued" and report["files"] == []
        not_yet = client.get(f"/api/v1/reports/{report['id']}/html", headers=bearer(viewer))
        assert not_yet.status_code == 409

        start_worker(settings)

        def done() -> Any:
            got = client.get(f"/api/v1/reports/{report['id']}", headers=bearer(viewer)).json()
            return got if got["status"] in ("done", "failed") else None

        finished = wait_for(done, 60, what="the report to be made")
        assert finished["status"] == "done", finished["error"]
        assert set(finished["files"]) >= {"html", "markdown", "facts"}
        listed = client.get("/api/v1/reports", headers=bearer(viewer)).json()
        assert [r["id"] for r in listed] == [report["id"]]

        html = client.get(f"/api/v1/reports/{report['id']}/html", headers=bearer(viewer))
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        facts = client.get(f"/api/v1/reports/{report['id']}/facts", headers=bearer(viewer))
        assert facts.status_code == 200 and facts.json()
        missing = client.get("/api/v1/reports/0000/html", headers=bearer(viewer))
        assert missing.status_code == 404
        bad_kind = client.get(f"/api/v1/reports/{report['id']}/exe", headers=bearer(viewer))
        assert bad_kind.status_code == 400
