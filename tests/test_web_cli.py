"""``decnet web`` on the command line: --help, and the one-line refusals to
start (no usable secret, no `web` extra)."""

import os
import subprocess
import sys

import pytest

from decnet.web.testing import TEST_SECRET


def decnet_web(*args, env=None, prelude=""):
    code = f"import sys; {prelude}from decnet.cli import main; sys.argv = ['decnet', 'web', *sys.argv[1:]]; main()"
    environ = {k: v for k, v in os.environ.items() if k != "DECNET_JWT_SECRET"}
    return subprocess.run([sys.executable, "-c", code, *args], env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_help_lists_every_option():
    result = decnet_web("--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--uds", "--send-timeout", "--keepalive", "--log-level"):
        assert option in result.stdout


@pytest.mark.parametrize("secret, why", [(None, "not set"), ("too-short", "at least 32"),
                                         ("changeme" * 4, "placeholder")])
def test_a_bad_secret_is_one_line_and_exit_1(secret, why):
    result = decnet_web("--port", "0", env={} if secret is None else {"DECNET_JWT_SECRET": secret})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and why in result.stderr and "Traceback" not in result.stderr


def test_without_the_web_extra_one_line_and_exit_1():
    result = decnet_web("--port", "0", env={"DECNET_JWT_SECRET": TEST_SECRET}, prelude="sys.modules['fastapi'] = None; ")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "`web` extra" in result.stderr, result.stderr
