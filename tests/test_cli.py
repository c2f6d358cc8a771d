import socket
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_version():
    result = subprocess.run([sys.executable, "-m", "decnet", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == f"decnet-bus {decnet.bus.__version__}\n"


@pytest.mark.parametrize("source", ["env", "run_dir", "default"])
def test_info_says_which_socket_a_client_uses_and_why(source, monkeypatch, tmp_path):
    from decnet.bus import config

    monkeypatch.delenv("DECNET_BUS_SOCKET", raising=False)
    monkeypatch.setattr(config, "RUN_DIR", tmp_path / "run" if source == "run_dir" else tmp_path / "absent")
    if source == "run_dir":
        (tmp_path / "run").mkdir()
    if source == "env":
        monkeypatch.setenv("DECNET_BUS_SOCKET", str(tmp_path / "env.sock"))
    line = CliRunner().invoke(app, ["info"]).output.splitlines()[-1]
    expected = {
        "env": f"socket: {tmp_path / 'env.sock'} (from $DECNET_BUS_SOCKET)",
        "run_dir": f"socket: {tmp_path / 'run' / 'bus.sock'} ({tmp_path / 'run'} exists)",
        "default": f"socket: {Path.home() / '.decnet' / 'bus.sock'} (the development default: {tmp_path / 'absent'} does not exist)",
    }[source]
    assert line == expected


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "decnet", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage" in result.stdout


# -- decnet bus pub / sub / stats against a real broker

import os  # noqa: E402

import orjson  # noqa: E402

from decnet.bus.testing import BrokerProcess  # noqa: E402


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


def one_line(result) -> str:
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_a_bad_stdin_line_publishes_nothing_and_names_its_line(broker):
    """Every line is checked before any is published: a bad one is named by
    its own line number (blank lines count), once, and nothing goes out."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "decnet", "bus", "sub", "cli.>", "--count", "1", "--socket", str(broker.path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = '{"n":1}\n\n{"n":2}\n{"n": 3,}\n{"n":4}\n'
        bad = run_decnet("bus", "pub", "cli.bad", "--socket", str(broker.path), input=lines)
        assert bad.returncode == 2
        message = one_line(bad)
        assert message.startswith("decnet: stdin line 4 is not JSON (column 8: trailing comma") and "line 1" not in message
        assert message.endswith("nothing was published")
        # The subscriber's one event is the marker: nothing of cli.bad came before it.
        for _ in range(200):
            assert run_decnet("bus", "pub", "cli.marker", "{}", socket_path=broker.path).returncode == 0
            if watch.poll() is not None:
                break
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert [orjson.loads(line)["topic"] for line in out.splitlines()] == ["cli.marker"], err


def test_a_payload_over_the_limit_exits_2_and_publishes_nothing(sockdir):
    """Without a broker, the default limit is the one known; with one, its own
    announced limit (here smaller) stands. Either way: exit 2, one line, and no
    event of the batch is published."""
    big = '"' + "x" * (1024 * 1024) + '"\n'
    none = run_decnet("bus", "pub", "a.b", input='{"n":1}\n' + big, socket_path=sockdir / "none.sock")
    assert none.returncode == 2
    assert one_line(none) == ("decnet: stdin line 2: payload of 1048578 bytes exceeds the default limit of "
                              "1048576 bytes; nothing was published")
    with BrokerProcess(sockdir / "small.sock", "--max-payload", "100") as proc:
        result = run_decnet("bus", "pub", "a.b", "--socket", str(proc.path), input='{"n":1}\n"' + "y" * 200 + '"\n')
        assert result.returncode == 2
        assert "stdin line 2: payload of 202 bytes exceeds the broker's limit of 100 bytes" in one_line(result)
        assert run_decnet("bus", "pub", "a.b", '{"n":1}', "--socket", str(proc.path)).returncode == 0


@pytest.mark.parametrize("with_broker", [False, True], ids=["no-broker", "broker"])
def test_a_reserved_topic_exits_2_whether_or_not_a_broker_runs(sockdir, with_broker):
    path = sockdir / "bus.sock"
    proc = BrokerProcess(path) if with_broker else None
    try:
        if proc:
            proc.start()
        for topic in ("system.bus.health", "system.bus.x"):
            result = run_decnet("bus", "pub", topic, "{}", "--socket", str(path))
            assert result.returncode == 2
            assert one_line(result) == f"decnet: topic {topic!r} is reserved for the broker (system.bus.*)"
    finally:
        if proc:
            proc.stop()


def test_stats_prints_the_next_heartbeat(broker):
    table = run_decnet("bus", "stats", "--socket", str(broker.path))
    assert table.returncode == 0, table.stderr
    assert "connections" in table.stdout and "hot path" in table.stdout and str(broker.path) in table.stdout
    data = run_decnet("bus", "stats", "--json", "--socket", str(broker.path))
    health = orjson.loads(data.stdout)
    assert health["loop"] == broker.loop and health["connections"] >= 1


def test_no_broker_is_one_line_naming_the_path_and_how_to_start_one(sockdir):
    path = sockdir / "none.sock"
    for args in (["bus", "pub", "a.b", "{}"], ["bus", "sub", "a"], ["bus", "stats"]):
        result = run_decnet(*args, socket_path=path)
        assert result.returncode == 1
        assert one_line(result) == f"decnet: no broker on {path}: no such socket; start one with `decnet bus --socket {path}`"
        given = run_decnet(*args, "--socket", str(path))
        assert given.returncode == 1 and one_line(given) == one_line(result)


def test_a_socket_nobody_listens_on_is_told_apart(sockdir):
    path = sockdir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    result = run_decnet("bus", "pub", "a.b", "{}", "--socket", str(path))
    assert result.returncode == 1
    assert one_line(result).startswith(f"decnet: no broker on {path}: connection refused")
    assert f"`decnet bus --socket {path}`" in result.stderr


def test_user_mistakes_exit_2(sockdir):
    assert run_decnet("bus", "pub", "a..b", "{}", socket_path=sockdir / "x").returncode == 2
    bad = run_decnet("bus", "pub", "a.b", "{nope", socket_path=sockdir / "x")
    assert bad.returncode == 2 and one_line(bad).startswith("decnet: the payload is not JSON (column 2: ")
    result = run_decnet("bus", "sub", "a.>.b", socket_path=sockdir / "x")
    assert result.returncode == 2 and "token 2" in result.stderr


# -- the broker's options: one definition (BrokerConfig), one CLI generated from it

import dataclasses  # noqa: E402
import re  # noqa: E402
import typer  # noqa: E402

from decnet.bus.config import BrokerConfig, ConfigError, LogLevel, Loop  # noqa: E402
from decnet.cli import options  # noqa: E402
from decnet.cli.bus import bus_app  # noqa: E402

DEPLOY_MD = Path(__file__).parent.parent / "docs" / "deploy.md"


def broker_params():
    command = typer.main.get_command(bus_app)
    return {p.name: p for p in command.params if p.name != "help"}


def test_every_config_field_is_one_cli_option_and_back():
    params = broker_params()
    assert set(params) == {f.name for f in dataclasses.fields(BrokerConfig)}
    for f in dataclasses.fields(BrokerConfig):
        assert params[f.name].opts == [options.flag(f)]
        assert f.metadata["help"] in (params[f.name].help or "")
    assert params["batch_writes"].hidden and params["batch_writes"].opts == ["--unbatched"]
    assert "--unbatched" not in CliRunner().invoke(app, ["bus", "--help"]).output


def test_help_lists_the_choices_and_the_bounds():
    out = CliRunner().invoke(app, ["bus", "--help"], terminal_width=200).output
    assert "auto|uvloop|asyncio" in out and "debug|info|warning|error" in out
    assert "Range: 0..1000." in out and "[default: 5.0]" in out  # --max-stall-ms, in ms
    assert "Range: at least 1." in out and "[default: 0660]" in out


def test_deploy_md_lists_every_visible_option():
    table = DEPLOY_MD.read_text().split("## Options", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", table, re.M))
    visible = {options.flag(f) for f in dataclasses.fields(BrokerConfig) if not f.metadata["hidden"]}
    assert documented == visible


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"queue_limit": 0}, "queue_limit"),
        ({"max_payload": 1 << 32}, "max_payload"),
        ({"max_stall": 1.5}, "max_stall"),
        ({"health_interval": 0}, "health_interval"),
        ({"hello_timeout": float("nan")}, "hello_timeout"),
        ({"mode": 0o1000}, "mode"),
        ({"loop": "tokio"}, "loop"),
        ({"log_level": "loud"}, "log_level"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"batch_writes": "no"}, "batch_writes"),
        ({"group": None}, "group"),
    ],
)
def test_config_refuses_what_is_out_of_bounds(kwargs, field):
    with pytest.raises(ConfigError) as error:
        BrokerConfig(**kwargs)
    assert error.value.field == field and isinstance(error.value, ValueError)
    assert "\n" not in str(error.value) and field in str(error.value)


def test_config_reads_choices_as_their_enums():
    config = BrokerConfig(loop="uvloop", log_level="WARNING")
    assert config.loop is Loop.uvloop and config.log_level is LogLevel.warning
    assert config.loop == "uvloop" and config.log_level.upper() == "WARNING"


ARGVS = [
    [],
    ["--socket", "/tmp/x.sock", "--loop", "asyncio", "--group", "wheel", "--mode", "0600"],
    ["--max-payload=0", "--queue-limit", "1", "--health-interval", "0.5", "--max-subscriptions", "3"],
    ["--max-connections", "7", "--max-stall-ms", "0", "--hello-timeout", "60", "--log-level", "debug"],
    ["--max-stall-ms", "2.5", "--unbatched", "--loop=uvloop"],
    ["--socket", ""],
    ["--log-level", "INFO"],  # typer only: the fast reading takes exact choices
    ["--max-payload", "1_000"],  # typer only
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a) or "no options")
def test_the_typer_free_reading_gives_typers_config(argv, monkeypatch):
    import decnet.bus.worker

    seen = []
    monkeypatch.setattr(decnet.bus.worker, "run", lambda config: seen.append(config) or 0)
    result = CliRunner().invoke(app, ["bus", *argv])
    assert result.exit_code == 0, result.output
    fast = options.read_broker_argv(["bus", *argv])
    assert fast is None or fast == seen[0]
    if all(a not in ("INFO", "1_000") for a in argv):
        assert fast is not None, "a plain option list must not need typer"


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["stats"], ["--queue-limit", "0"], ["--max-payload", "-1"], ["--loop"], ["--nope", "1"],
     ["--group", "a", "--group", "b"], ["--unbatched=1"], ["--mode", "9"], ["--max-stall-ms", "1e3"]],
)
def test_the_typer_free_reading_leaves_the_rest_to_typer(argv):
    assert options.read_broker_argv(["bus", *argv]) is None


def test_the_broker_process_runs_without_typer():
    """Typer brings pydantic; neither stays in the long-running broker."""
    code = (
        "import sys, decnet.bus.worker as w, decnet.cli as cli\n"
        "w.run = lambda config: print(sorted(m for m in ('typer', 'pydantic', 'rich') if m in sys.modules), config.queue_limit) or 0\n"
        "sys.argv = ['decnet', 'bus', '--queue-limit', '4096']\n"
        "cli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "4096"]
