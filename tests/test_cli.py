import subprocess
import sys

from typer.testing import CliRunner

import decnet.bus
from decnet.cli import app


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_info_reports_the_hot_path_in_use():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0
    assert f"decnet-bus {decnet.bus.__version__}" in result.output
    expected = "compiled (Cython)" if decnet.bus.ACCELERATED else "pure Python"
    assert expected in result.output


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "decnet", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage" in result.stdout


# -- decnet bus pub / sub / stats against a real broker

import os  # noqa: E402

import orjson  # noqa: E402


def run_decnet(*args, input=None, timeout=30, socket_path=None):
    env = {**os.environ}
    if socket_path is not None:
        env["DECNET_BUS_SOCKET"] = str(socket_path)
    return subprocess.run([sys.executable, "-m", "decnet", *args], capture_output=True, text=True, input=input, timeout=timeout, env=env)


def test_sub_shows_what_pub_sends(broker):
    sub = subprocess.Popen(
        # Not ">": the fixture's heartbeat (every 0.2 s) could be both events on a slow machine.
        [sys.executable, "-m", "decnet", "bus", "sub", "decky.*.state", "--count", "2", "--socket", str(broker.path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Publish until the subscriber (which may still be starting) has its two events.
        lines = []
        for _ in range(200):
            assert run_decnet("bus", "pub", "decky.d1.state", '{"state":"up"}', socket_path=broker.path).returncode == 0
            if sub.poll() is not None:
                break
        out, err = sub.communicate(timeout=30)
        lines = [orjson.loads(line) for line in out.splitlines()]
    finally:
        sub.kill()
    assert sub.returncode == 0, err
    assert [line["topic"] for line in lines] == ["decky.d1.state"] * 2
    assert lines[0]["payload"] == {"state": "up"} and "T" in lines[0]["time"]


def test_pub_reads_one_event_per_stdin_line(broker):
    result = run_decnet("bus", "pub", "system.log", "--socket", str(broker.path), input='{"n":1}\n\n{"n":2}\n')
    assert result.returncode == 0, result.stderr
    bad = run_decnet("bus", "pub", "system.log", "--socket", str(broker.path), input='{"n":1}\nnot json\n')
    assert bad.returncode == 2 and "stdin line 2 is not JSON" in bad.stderr


def test_stats_prints_the_next_heartbeat(broker):
    table = run_decnet("bus", "stats", "--socket", str(broker.path))
    assert table.returncode == 0, table.stderr
    assert "connections" in table.stdout and "hot path" in table.stdout and str(broker.path) in table.stdout
    data = run_decnet("bus", "stats", "--json", "--socket", str(broker.path))
    health = orjson.loads(data.stdout)
    assert health["loop"] == broker.loop and health["connections"] >= 1


def test_no_broker_is_one_line_naming_the_path_and_how_to_start_one(sockdir):
    for args in (["bus", "pub", "a.b", "{}"], ["bus", "sub", "a"], ["bus", "stats"]):
        result = run_decnet(*args, socket_path=sockdir / "none.sock")
        assert result.returncode == 1
        assert str(sockdir / "none.sock") in result.stderr and "decnet bus" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_user_mistakes_exit_2(sockdir):
    assert run_decnet("bus", "pub", "a..b", "{}", socket_path=sockdir / "x").returncode == 2
    assert run_decnet("bus", "pub", "a.b", "{nope", socket_path=sockdir / "x").returncode == 2
    result = run_decnet("bus", "sub", "a.>.b", socket_path=sockdir / "x")
    assert result.returncode == 2 and "token 2" in result.stderr
