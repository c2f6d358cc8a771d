"""Shared fixtures: every hot-path test runs against both implementations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from implementations import IMPLS, NOT_BUILT, impl, twins  # noqa: F401  (fixtures; IMPLS and NOT_BUILT for the tests)

# 500 examples per property everywhere (CI included); no deadline, since a loaded
# 2-core machine makes single examples slow without anything being wrong.
settings.register_profile("default", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


# -- event loops and brokers for the network tests

import asyncio  # noqa: E402
import shutil  # noqa: E402

import uvloop  # noqa: E402

from decnet.bus.testing import BrokerProcess, short_tmpdir  # noqa: E402

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
TEST_TIMEOUT = 60.0


@pytest.fixture(params=list(LOOPS))
def loop_name(request):
    """Network tests run on uvloop and on plain asyncio (client and broker alike)."""
    return request.param


@pytest.fixture
def run(loop_name):
    """Run a coroutine to completion on a fresh loop of the kind under test.

    The test fails on any exception the loop reports as unhandled (a callback
    that raised, a task whose error nobody retrieved)."""

    def runner(coro, timeout: float = TEST_TIMEOUT):
        loop = LOOPS[loop_name]()
        unhandled = []
        loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            assert not unhandled, f"unhandled loop exceptions: {unhandled}"

    return runner


@pytest.fixture
def sockdir():
    path = short_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def broker(sockdir, loop_name):
    """A real broker process on a temp socket, on the loop under test."""
    proc = BrokerProcess(sockdir / "bus.sock", "--health-interval", "0.2", loop=loop_name)
    proc.start()
    yield proc
    proc.stop()
