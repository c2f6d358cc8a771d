"""Every micro-benchmark runs against both implementations."""

import pytest

from decnet.bus._compat import implementations

IMPLS = implementations()


@pytest.fixture(params=["pure", "compiled"])
def impl(request):
    """The module under test: ``_purematch`` or ``_fastmatch``."""
    module = IMPLS.get(request.param)
    if module is None:
        pytest.skip("compiled extension not built")
    return module
