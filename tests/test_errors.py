"""Every exception class of powerflow derives from PowerflowError (errors.py), in its group."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

from powerflow_common import errors
from powerflow_common.errors import InvalidInput, NotFound, PowerflowError, Retryable, Unavailable

PACKAGES = (
    "powerflow",
    "powerflow_common",
    "powerflow_ingest",
    "powerflow_writer",
    "powerflow_aggregator",
    "powerflow_api",
    "powerflow_reporter",
)
# Migrations are frozen history: they keep their own classes (0003's DeviceCodeCollision).
FROZEN = "powerflow_common.db.migrations"


def our_modules() -> list[ModuleType]:
    found: list[ModuleType] = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if info.name.startswith(FROZEN) or info.name.endswith("__main__"):
                continue
            found.append(importlib.import_module(info.name))
    return found


def exception_classes() -> list[type[BaseException]]:
    return [
        cls
        for module in our_modules()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    ]


def test_the_walk_finds_the_exceptions_of_every_layer() -> None:
    names = {cls.__qualname__ for cls in exception_classes()}
    # One of each: common, a service, the reporter, the command line.
    assert {"FactorNotFound", "LockTimeout", "NoData", "EngineSetupError"} <= names


def test_every_exception_class_derives_from_powerflow_error() -> None:
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in exception_classes()
        if not issubclass(cls, PowerflowError)
    ]
    assert outside == [], "derive these from a group of powerflow_common.errors"


@pytest.mark.parametrize(
    ("dotted", "group", "kept"),
    [
        ("powerflow_common.carbon.FactorNotFound", NotFound, LookupError),
        ("powerflow_common.queries.ScopeNotFound", NotFound, LookupError),
        ("powerflow_common.queries.PlacementError", InvalidInput, ValueError),
        ("powerflow_common.report_requests.InvalidReportRequest", InvalidInput, ValueError),
        ("powerflow_common.admission.UnknownDevices", NotFound, LookupError),
        ("powerflow_common.admission.TooManyCodes", InvalidInput, ValueError),
        ("powerflow_common.bounds.OutOfBounds", InvalidInput, ValueError),
        ("powerflow_common.db.dialect.LockNotAcquired", Retryable, Exception),
        ("powerflow_common.db.dialect.UnsupportedDatabase", Unavailable, RuntimeError),
        ("powerflow_common.db.sqltime.UnsupportedDialect", Unavailable, LookupError),
        ("powerflow_reporter.narrative.TransientNarrativeError", Retryable, RuntimeError),
        ("powerflow_reporter.narrative.NarrativeUnavailable", Unavailable, RuntimeError),
        ("powerflow_reporter.pdf.PdfUnavailable", Unavailable, RuntimeError),
        ("powerflow_reporter.fonts.FontMissing", Unavailable, RuntimeError),
        ("powerflow_reporter.facts.NoData", NotFound, ValueError),
        ("powerflow_aggregator.rollup.LockTimeout", Retryable, Exception),
        ("powerflow_aggregator.retention_job.RetentionError", Unavailable, RuntimeError),
        ("powerflow_api.live.LiveLimitReached", Retryable, Exception),
        ("powerflow.engines.EngineSetupError", Unavailable, RuntimeError),
        ("powerflow.broker.BrokerSetupError", Unavailable, RuntimeError),
        ("powerflow_common.errors.Rejected", InvalidInput, Exception),
        ("powerflow_common.errors.ConfigurationError", Unavailable, Exception),
        ("powerflow_common.errors.CorrectionTargetMissing", NotFound, errors.CorrectionRefused),
    ],
)
def test_a_class_is_in_the_group_of_what_its_caller_does_and_keeps_its_builtin_base(
    dotted: str, group: type[PowerflowError], kept: type[BaseException]
) -> None:
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, group)
    assert issubclass(cls, kept)


def test_an_api_error_is_still_litestars_http_exception() -> None:
    from litestar.exceptions import HTTPException

    from powerflow_api.problems import ApiError

    error = ApiError(status_code=404, detail="No device.")
    assert isinstance(error, HTTPException) and isinstance(error, PowerflowError)
    assert error.status_code == 404
