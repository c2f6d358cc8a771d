"""``decnet bus bridge`` refuses what it cannot run in one line: without
nats-py (exit 1), and every usage error (exit 2). No NATS server needed."""

import os
import subprocess
import sys

import pytest


def test_without_nats_py_one_line_and_exit_1(sockdir):
    code = ("import sys; sys.modules['nats'] = None; sys.argv = ['decnet', 'bus', 'bridge', '--nats', "
            "'nats://127.0.0.1:1', '--export', 'decky.>']; from decnet.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DECNET_BUS_SOCKET": str(sockdir / "x.sock")})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["decnet: nats-py is not installed: pip install 'decnet-bus[bridge]'"]


@pytest.mark.parametrize("args, message", [
    (["--export", "decky.>", "--name", "a.b"], "--name"),
    ([], "nothing would cross"),
    (["--export", "system.bus.>"], "never exported"),
    (["--export", "decky.>", "--user", "u"], "DECNET_NATS_PASSWORD"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message):
    result = subprocess.run([sys.executable, "-m", "decnet", "bus", "bridge", "--nats", "nats://127.0.0.1:1", *args],
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "DECNET_NATS_PASSWORD"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decnet: ") and message in lines[0], result.stderr
