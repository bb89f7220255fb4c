"""How many examples a property test runs, relative to the active hypothesis profile.

The profiles live in the repository's root ``conftest.py``: ``repeatable`` (``make test``) and
``fuzz`` (``make fuzz``, many more). A test that needs more or fewer than the profile's count
asks for a multiple of it, so ``make fuzz`` lengthens it too; a fixed ``max_examples`` would not.
"""

from __future__ import annotations

from hypothesis import settings

# hypothesis' own default, for a run without the root conftest (a single file run from elsewhere)
_HYPOTHESIS_DEFAULT_EXAMPLES = 100


def examples(times: float = 1.0) -> int:
    """``times`` the active profile's ``max_examples``, at least 1."""
    current = settings.default
    base = current.max_examples if current is not None else _HYPOTHESIS_DEFAULT_EXAMPLES
    return max(1, int(base * times))
