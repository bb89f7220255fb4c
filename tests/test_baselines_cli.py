"""`powerflow weather import|outdoor` and `powerflow baseline fit|savings` on a real database."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from pf_baselines import BASELINE, REPORTING, make_plant
from sqlalchemy import Engine
from typer.testing import CliRunner

from powerflow.cli import app


def test_the_cli_imports_weather_fits_a_baseline_and_reports_savings(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    plant = make_plant(engine)
    site = str(plant["site"])
    env = {"POWERFLOW_DATABASE_URL": database_url, "POWERFLOW_LOG_LEVEL": "error"}
    runner = CliRunner()
    first, days = BASELINE
    last = first + timedelta(days=days - 1)
    span = ["--site", site, "--from", first.isoformat(), "--to", last.isoformat()]

    refused = runner.invoke(app, ["baseline", "fit", *span], env=env)
    assert refused.exit_code == 1 and "no_outdoor_series" in refused.output

    csv_file = tmp_path / "asos.csv"
    rows = [f"108,서울,{d.isoformat()},{t:.2f}" for d, t in sorted(plant["temps"].items())]
    csv_file.write_bytes(("지점,지점명,일시,평균기온(°C)\n" + "\n".join(rows)).encode("cp949"))
    imported = runner.invoke(app, ["weather", "import", str(csv_file), "--site", site], env=env)
    assert imported.exit_code == 0, imported.output
    assert "120 days of station 108" in imported.output

    fitted = runner.invoke(app, ["baseline", "fit", *span], env=env)
    assert fitted.exit_code == 0, fitted.output
    assert (
        '"model_kind": "5p"' in fitted.output and '"temperature_source": "weather"' in fitted.output
    )

    # The reporting period has no imported weather: the baseline's own source is required.
    r_first, r_days = REPORTING
    r_span = [
        "--site", site, "--from", r_first.isoformat(),
        "--to", (r_first + timedelta(days=r_days - 1)).isoformat(),
    ]  # fmt: skip
    missing = runner.invoke(app, ["baseline", "savings", *r_span], env=env)
    assert missing.exit_code == 1 and "no_outdoor_series" in missing.output

    marked = runner.invoke(app, ["weather", "outdoor", "yard-1"], env=env)
    assert marked.exit_code == 0 and "yard-1: outdoor" in marked.output
    # A baseline on the outdoor device covers the reporting period: 10 % less, within its band.
    refit = runner.invoke(app, ["baseline", "fit", *span, "--source", "device"], env=env)
    assert refit.exit_code == 0, refit.output
    saved = runner.invoke(app, ["baseline", "savings", *r_span], env=env)
    assert saved.exit_code == 0, saved.output
    found = re.search(r"= (-?[\d.]+) % ± ([\d.]+) % at 90%", saved.output)
    assert found, saved.output
    pct, band = float(found[1]), float(found[2])
    assert pct - band <= 10.0 <= pct + band
    unknown = runner.invoke(app, ["weather", "outdoor", "nope"], env=env)
    assert unknown.exit_code == 1 and "unknown_device" in unknown.output
