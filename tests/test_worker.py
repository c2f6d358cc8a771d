"""``decnet bus`` as systemd runs it: start-up rules, socket file, activation,
notification, shutdown."""

import grp
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from decnet.bus._pure import encode
from decnet.bus.testing import BrokerProcess, Raw


def start_expecting_failure(path, *args, env=None):
    cmd = [sys.executable, "-m", "decnet", "bus", "--socket", str(path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})})


def test_sigterm_says_bye_removes_the_socket_and_exits_0(sockdir, loop_name):
    proc = BrokerProcess(sockdir / "bus.sock", loop=loop_name).start()
    try:
        raw = Raw(proc.path)
        raw.send(encode("SUB", ">"))
        raw.until_pong()
        assert proc.stop(signal.SIGTERM) == 0
        frames = []
        while (frame := raw.frame()) is not None:
            frames.append(frame[0])
        assert frames[-1:] == ["BYE"]
        assert not proc.path.exists()
        out = proc.output()
        assert "Traceback" not in out and "stopped" in out
    finally:
        proc.stop()


def _ignored_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16)


def test_a_second_sigterm_while_stopping_changes_nothing(sockdir, loop_name):
    """systemd (or an impatient operator) may signal again while the broker says
    BYE and flushes: the stop goes on and still exits 0. Once it is stopping,
    SIGTERM is ignored, also after the loop has closed (its handlers would fall
    back to the default action, which kills)."""
    proc = BrokerProcess(sockdir / "bus.sock", loop=loop_name).start(keep_notify=True)
    try:
        holder = Raw(proc.path)  # never closes: the broker's shutdown waits for it
        holder.until_pong()
        proc.notify.settimeout(10)
        proc.proc.send_signal(signal.SIGTERM)
        while b"STOPPING=1" not in proc.notify.recv(4096):
            pass
        assert _ignored_signals(proc.pid) & (1 << (signal.SIGTERM - 1))
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0
        holder.close()
    finally:
        proc.notify.close()
        proc.stop()


def test_refuses_to_start_when_a_broker_answers(broker):
    result = start_expecting_failure(broker.path)
    assert result.returncode == 1
    assert f"a broker already answers on {broker.path}" in result.stderr
    assert "Traceback" not in result.stderr
    assert Raw(broker.path).server  # the first one is untouched


def test_replaces_a_stale_socket_file(sockdir, loop_name):
    path = sockdir / "bus.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nothing listens: a crashed broker's leftover
    with BrokerProcess(path, loop=loop_name) as proc:
        assert Raw(path).server
        assert "removing stale socket" in proc.output()


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_never_follows_a_symlink_nor_replaces_a_non_socket(sockdir, kind):
    path = sockdir / "bus.sock"
    target = sockdir / "target"
    target.write_text("precious")
    if kind == "symlink":
        path.symlink_to(target)
    else:
        path.write_text("precious")
    result = start_expecting_failure(path)
    assert result.returncode == 1
    assert ("symlink" if kind == "symlink" else "not a socket") in result.stderr
    assert target.read_text() == "precious"
    assert path.is_symlink() if kind == "symlink" else path.read_text() == "precious"


def test_socket_mode_group_and_parent_directory(sockdir, loop_name):
    group = grp.getgrgid(os.getgid() if os.getgid() else 1).gr_name  # any group that exists
    path = sockdir / "run" / "decnet" / "bus.sock"
    proc = BrokerProcess(path, loop=loop_name)
    proc.args = ("--group", group)
    with proc:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == grp.getgrnam(group).gr_gid
        parent = os.stat(path.parent)
        assert not stat.S_IMODE(parent.st_mode) & 0o002  # not world-writable


def test_mode_option_and_missing_group_is_a_warning(sockdir, loop_name):
    proc = BrokerProcess(sockdir / "bus.sock", "--mode", "0600", loop=loop_name)
    with proc:
        assert stat.S_IMODE(os.stat(proc.path).st_mode) == 0o600
    assert "group 'nogroup-decnet-test' does not exist" in proc.output()


def test_socket_activation_and_notify(sockdir, loop_name):
    """systemd's way: a listening socket as fd 3, LISTEN_FDS/LISTEN_PID, READY=1 back."""
    path = sockdir / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    fd = listener.fileno()
    proc = BrokerProcess(path, loop=loop_name, env={"LISTEN_FDS": "1", "WATCHDOG_USEC": "200000"})
    broker_cmd = " ".join(f"'{a}'" for a in proc.command() if a not in ("--socket", str(path)))
    # LISTEN_PID must be the broker's own pid: the shell's $$ survives its exec.
    proc.command = lambda: ["bash", "-c", f"exec 3<&{fd}; export LISTEN_PID=$$ WATCHDOG_PID=$$; exec {broker_cmd}"]
    proc.start(keep_notify=True, pass_fds=(fd,))
    listener.close()
    try:
        assert any("READY=1" in m for m in proc.messages)
        assert any(f"STATUS=serving on {path}" in m for m in proc.messages)
        raw = Raw(path)
        raw.send(encode("SUB", "a"))
        raw.pub("a", 1)
        assert [f[0] for f in raw.until_pong()] == ["EVT"]
        proc.notify.settimeout(10)
        assert b"WATCHDOG=1" in proc.notify.recv(4096)
        assert proc.stop() == 0
        assert path.exists()  # systemd's socket: not the broker's to remove
        assert "socket-activated" in proc.output()
    finally:
        proc.notify.close()
        proc.stop()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--mode", "999"], "octal"),
        (["--mode", "1777"], "'--mode': must be within 0000..0777, got 1777"),
        (["--loop", "tokio"], "'auto', 'uvloop', 'asyncio'"),
        (["--log-level", "LOUD"], "'debug', 'info', 'warning', 'error'"),
        (["--max-payload", "-1"], "--max-payload"),
        (["--queue-limit", "0"], "'--queue-limit': must be at least 1, got 0"),
        (["--max-stall-ms", "5000"], "'--max-stall-ms': must be within 0..1000, got 5000"),
        (["--hello-timeout", "0"], "'--hello-timeout': must be within 0.05..60, got 0"),
    ],
)
def test_bad_options_are_one_clear_line(sockdir, args, message):
    result = start_expecting_failure(sockdir / "bus.sock", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "Error" in line]) == 1
    assert not (sockdir / "bus.sock").exists()
