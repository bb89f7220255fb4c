"""One report job, a plain function of its id: claim the row, compute facts, narrate, render, store.

Transient errors (Claude busy or unreachable, database hiccups) are raised for dramatiq to retry;
permanent ones (no data, a refused request) fail the report at once with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import anthropic
from dramatiq.middleware import Interrupt
from sqlalchemy import Engine, select, update

from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import ESG_REPORTS
from powerflow_common.logs import get_logger
from powerflow_common.report_requests import FILE_KINDS, report_dir
from powerflow_common.settings import Settings
from powerflow_reporter.facts import NoData, ReportScope, compute_facts, load_inputs
from powerflow_reporter.formatting import Language, facts_json
from powerflow_reporter.narrative import (
    Narrative,
    NarrativeUnavailable,
    TransientNarrativeError,
    claude_narrative,
    template_narrative,
)
from powerflow_reporter.pdf import PdfUnavailable, render_pdf
from powerflow_reporter.render import render_html, render_markdown

__all__ = ["make_client", "mark_exhausted", "run_report"]

log = get_logger(__name__)
_reports = ESG_REPORTS


def make_client(settings: Settings) -> anthropic.Anthropic | None:
    """The Claude client, or None without ANTHROPIC_API_KEY (the template narrative then)."""
    if settings.anthropic_api_key is None:
        return None
    # One retry policy rules: dramatiq's. The SDK's own retries are off.
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=0,
        timeout=settings.anthropic_timeout_s,
    )


def _claim(engine: Engine, settings: Settings, report_id: str) -> Any | None:
    """Mark the row running if it is waiting (or its runner went stale); None if not ours."""
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=settings.report_stale_after_s)
    with begin_write(engine) as conn:
        claimed = conn.execute(
            update(_reports)
            .where(
                _reports.c.id == report_id,
                (_reports.c.status == "queued")
                | ((_reports.c.status == "running") & (_reports.c.updated_at < stale)),
            )
            .values(status="running", updated_at=now)
        ).rowcount
        if not claimed:
            return None
        return conn.execute(select(_reports).where(_reports.c.id == report_id)).first()


def _set(engine: Engine, report_id: str, **values: Any) -> None:
    with begin_write(engine) as conn:
        conn.execute(
            update(_reports)
            .where(_reports.c.id == report_id)
            .values(updated_at=datetime.now(UTC), **values)
        )


def run_report(
    engine: Engine,
    settings: Settings,
    report_id: str,
    *,
    client_factory: Callable[[], Any] | None = None,
) -> None:
    """Produce one report; re-running overwrites this report's own files only."""
    row = _claim(engine, settings, report_id)
    if row is None:
        log.info("report_not_claimed", report_id=report_id)
        return
    log.info("report_started", report_id=report_id, scope=row.scope, language=row.language)
    try:
        _produce(engine, settings, row, client_factory)
    except (NoData, NarrativeUnavailable) as exc:
        _set(engine, report_id, status="failed", error=str(exc))
        log.warning("report_failed", report_id=report_id, reason=str(exc))
    except TransientNarrativeError as exc:
        # Back to queued with the reason: the retry claims it again; exhaustion fails it.
        _set(engine, report_id, status="queued", error=f"retrying: {exc}")
        log.warning("report_attempt_failed", report_id=report_id, reason=str(exc))
        raise
    except Interrupt as exc:  # dramatiq's time limit or shutdown
        _set(engine, report_id, status="queued", error=f"retrying: {type(exc).__name__}")
        raise
    except Exception as exc:
        _set(engine, report_id, status="queued", error=f"retrying: {type(exc).__name__}: {exc}")
        log.exception("report_attempt_error", report_id=report_id)
        raise


def _produce(
    engine: Engine, settings: Settings, row: Any, client_factory: Callable[[], Any] | None
) -> None:
    ref = row.scope_ref or {}
    scope = ReportScope(
        kind=row.scope,
        site_id=ref.get("site_id"),
        device_ids=tuple(ref.get("device_ids", ())),
    )
    language = cast(Language, row.language)
    with engine.connect() as conn:
        inputs = load_inputs(
            conn,
            scope,
            row.period_start,
            row.period_end,
            default_tz=ref.get("timezone", settings.organisation_timezone),
            settings=settings,
        )
    facts = compute_facts(inputs)
    zone = ZoneInfo(inputs.tz)
    years = set(
        range(
            row.period_start.astimezone(zone).year,
            (row.period_end - timedelta(seconds=1)).astimezone(zone).year + 1,
        )
    )
    client = client_factory() if client_factory is not None else make_client(settings)
    narrative: Narrative
    if client is None:
        narrative = template_narrative(facts, language)
    else:
        narrative = claude_narrative(
            client,
            settings.anthropic_model,
            facts,
            language,
            years=years,
            max_tokens=settings.anthropic_max_tokens,
        )
    generated_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    html_text = render_html(
        report_id=row.id,
        generated_at=generated_at,
        scope=row.scope,
        facts=facts,
        narrative=narrative,
        language=language,
    )
    markdown = render_markdown(
        report_id=row.id,
        generated_at=generated_at,
        facts=facts,
        narrative=narrative,
        language=language,
    )
    data = facts_json(facts, language)
    directory = report_dir(settings, row.id)
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / FILE_KINDS["html"][0], html_text.encode())
    _write(directory / FILE_KINDS["markdown"][0], markdown.encode())
    _write(directory / FILE_KINDS["facts"][0], json.dumps(data, ensure_ascii=False).encode())
    pdf_made = False
    note: str | None = None
    if settings.report_pdf_enabled:
        pdf_tmp = directory / f".{FILE_KINDS['pdf'][0]}.{os.getpid()}.tmp"
        try:
            render_pdf(html_text, pdf_tmp)
        except PdfUnavailable as exc:
            # Permanent on this machine: retrying would only delay the HTML and Markdown, so
            # the report is done without its PDF and says why (and what to install).
            note = str(exc)
            log.error("report_pdf_unavailable", report_id=row.id, reason=note)
            (directory / FILE_KINDS["pdf"][0]).unlink(missing_ok=True)  # an earlier run's
        else:
            os.replace(pdf_tmp, directory / FILE_KINDS["pdf"][0])
            pdf_made = True
    grounding = {**narrative.grounding, "usage": narrative.usage}
    usage = narrative.usage
    _set(
        engine,
        row.id,
        status="done",
        error=note,
        facts=data,
        grounding=grounding,
        model=narrative.model if narrative.source == "claude" else "template",
        input_tokens=(
            usage.get("input_tokens", 0)
            + usage.get("cache_read_input_tokens", 0)
            + usage.get("cache_creation_input_tokens", 0)
            if usage
            else None
        ),
        output_tokens=usage.get("output_tokens") if usage else None,
        # Relative to POWERFLOW_REPORTS_DIR, so each machine may mount the volume elsewhere.
        html_path=f"{row.id}/{FILE_KINDS['html'][0]}",
        pdf_path=f"{row.id}/{FILE_KINDS['pdf'][0]}" if pdf_made else None,
        markdown_path=f"{row.id}/{FILE_KINDS['markdown'][0]}",
    )
    log.info(
        "report_done",
        report_id=row.id,
        narrative=narrative.source,
        grounding_passed=narrative.grounding.get("passed"),
        input_tokens=usage.get("input_tokens"),
        cache_read_input_tokens=usage.get("cache_read_input_tokens"),
        output_tokens=usage.get("output_tokens"),
    )


def _write(path: Path, content: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def mark_exhausted(engine: Engine, report_id: str, retries: int) -> None:
    """Retries ran out: the report fails with the last attempt's reason."""
    with begin_write(engine) as conn:
        row = conn.execute(
            select(_reports.c.status, _reports.c.error).where(_reports.c.id == report_id)
        ).first()
        if row is None or row.status in ("done", "failed"):
            return
        last = (row.error or "unknown error").removeprefix("retrying: ")
        conn.execute(
            update(_reports)
            .where(_reports.c.id == report_id)
            .values(
                status="failed",
                error=f"gave up after {retries + 1} attempts: {last}",
                updated_at=datetime.now(UTC),
            )
        )
    log.warning("report_failed", report_id=report_id, reason="retries exhausted")
