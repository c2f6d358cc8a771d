"""Shared fixtures: every hot-path test runs against both implementations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from decnet.bus._compat import implementations

IMPLS = implementations()
NOT_BUILT = "compiled extension not built (installed with DECNET_BUS_NO_EXTENSIONS=1?)"

# 500 examples per property everywhere (CI included); no deadline, since a loaded
# 2-core machine makes single examples slow without anything being wrong.
settings.register_profile("default", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


@pytest.fixture(params=["pure", "compiled"])
def impl(request):
    """The module under test: ``_purematch`` or ``_fastmatch``."""
    module = IMPLS.get(request.param)
    if module is None:
        pytest.skip(NOT_BUILT)
    return module


@pytest.fixture(scope="session")
def twins():
    """Both implementations, for tests that compare them."""
    if "compiled" not in IMPLS:
        pytest.skip(NOT_BUILT)
    return IMPLS["pure"], IMPLS["compiled"]
