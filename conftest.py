"""Hypothesis profiles and the logging cache for every test path (the rootdir conftest).

``repeatable`` (the default, what ``make test`` runs): the same examples on every run and every
machine, so a failure in CI fails again on a laptop, and no example database carries one run's
findings into the next. ``fuzz`` (``make fuzz``): many random examples, each failure printed
with the ``@reproduce_failure`` blob that replays it; the fix keeps it as a fixed example.

Choose with ``--hypothesis-profile=NAME`` or ``POWERFLOW_HYPOTHESIS_PROFILE=NAME``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from powerflow_common import logs

# In-process CLI commands configure logging again and again in one test process; without this,
# a module logger first used under one configuration would keep it, and tests that capture
# events (structlog.testing.capture_logs) would see nothing, depending on which tests ran first
# in their pytest-xdist worker.
logs.CACHE_LOGGERS_ON_FIRST_USE = False

REPEATABLE = "repeatable"
FUZZ = "fuzz"
# Two shared cores make timing health checks and deadlines flaky; examples still run in full.
_SLOW_IS_FINE = [HealthCheck.too_slow]
# Twenty times the default 100: long enough to find what a fixed seed missed, short enough
# for a coffee break (the schema test derives its per-operation count from this).
FUZZ_EXAMPLES = int(os.environ.get("POWERFLOW_FUZZ_EXAMPLES", "2000"))

settings.register_profile(
    REPEATABLE,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    FUZZ,
    derandomize=False,
    database=None,
    deadline=None,
    max_examples=FUZZ_EXAMPLES,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
# --hypothesis-profile (hypothesis' pytest plugin) is applied after this and wins.
settings.load_profile(os.environ.get("POWERFLOW_HYPOTHESIS_PROFILE", REPEATABLE))
