"""The hot-path implementations under test, as the ``impl`` and ``twins`` fixtures.

Both twins are imported here directly, not through ``_compat``, so a run tests
each whatever ``DECNET_BUS_NO_EXTENSIONS`` selects; the compiled one is skipped,
saying why, when it is not built. bench/conftest.py uses the same fixture.
"""

from __future__ import annotations

import pytest

from decnet.bus import _pure

try:
    from decnet.bus import _fastmatch
except ImportError:  # installed with DECNET_BUS_NO_EXTENSIONS=1
    _fastmatch = None

#: The implementations importable here, by fixture id.
IMPLS = {"pure": _pure} if _fastmatch is None else {"pure": _pure, "compiled": _fastmatch}
NOT_BUILT = "compiled extension not built (installed with DECNET_BUS_NO_EXTENSIONS=1?)"


@pytest.fixture(params=[_pure, _fastmatch], ids=["pure", "compiled"])
def impl(request):
    """The module under test: ``decnet.bus._pure`` or ``decnet.bus._fastmatch``."""
    if request.param is None:
        pytest.skip(NOT_BUILT)
    return request.param


@pytest.fixture(scope="session")
def twins():
    """Both implementations, for tests that compare them."""
    if _fastmatch is None:
        pytest.skip(NOT_BUILT)
    return _pure, _fastmatch
