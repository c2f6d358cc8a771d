"""A broker process (and any other that says READY=1 as systemd's
``Type=notify`` services do): start ``decnet bus`` on a temp socket, wait for
READY=1 from the broker itself (sd_notify on a socket this side owns), stop it
by PID (signal, wait, kill), and read its CPU time, RSS, open fds and system
calls.

The readings take any PID, so a benchmark reads a peer server (nats-server,
redis-server) the same way.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

READY_TIMEOUT = 20.0
# A group no host has: the broker warns and leaves the socket's group alone,
# whoever runs the tests (--group in the arguments overrides it).
NO_GROUP = "nogroup-decnet-test"


class StartError(RuntimeError):
    """The process exited, or stayed silent, before READY=1; the message holds its log."""


class NotifyProcess:
    """A child process that says READY=1 on a NOTIFY_SOCKET this side owns, as
    systemd's ``Type=notify`` services do (the broker, ``decnet bus bridge``,
    ``decnet web``): started and waited for, stopped by PID (signal, wait,
    kill), and read (CPU time, RSS, fds, system calls). A subclass names its
    ``command()``.

    ``env`` adds to the environment. The log and the notify socket live in
    ``workdir`` (default: a private directory, removed at the first stop); a
    ``workdir`` the caller gives is the caller's to remove.
    """

    #: The file in ``workdir`` that gets the process's stdout and stderr.
    log_name = "process.log"
    #: Seconds ``stop`` waits after its signal before it kills.
    stop_timeout = 10.0

    def __init__(self, env: Optional[dict] = None, workdir: Optional[os.PathLike] = None,
                 prefix: str = "dbus-") -> None:
        self.own_workdir = workdir is None
        self.workdir = short_tmpdir(prefix) if workdir is None else Path(workdir)
        self.env = dict(env or {})
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.workdir / self.log_name
        self.messages: list[str] = []
        self._output: Optional[str] = None
        self._ps = None

    def command(self) -> list[str]:
        """The command line ``start`` runs."""
        raise NotImplementedError

    def start(self, wait: bool = True, keep_notify: bool = False, **popen):
        """Start, and wait for READY=1 unless ``wait`` is false; ``popen`` goes to
        ``subprocess.Popen``. ``keep_notify`` leaves ``self.notify`` open for the
        process's later messages (WATCHDOG=1): ``stop`` does not close it."""
        notify_path = self.workdir / f"notify-{time.monotonic_ns()}"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, **popen)
        self._ps = None
        try:
            self.messages = wait_ready(notify, self.proc, self.log) if wait else []
        finally:
            if keep_notify:
                self.notify = notify
            else:
                notify.close()
                notify_path.unlink()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: Optional[float] = None) -> int:
        """Send ``sig``, wait up to ``timeout`` s (default ``stop_timeout``), then
        kill; its exit code. The first stop by anything but SIGKILL keeps the
        log (``output``) and removes the private directory."""
        if self.proc is None:
            return 0
        code = stop_process(self.proc, sig, self.stop_timeout if timeout is None else timeout)
        if self._output is None and sig != signal.SIGKILL:
            self._output = self.log.read_text(errors="replace")
            if self.own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def kill(self) -> None:
        """SIGKILL: the log stays readable, a successor may take over the address."""
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self._output if self._output is not None else self.log.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def ps(self):
        """psutil's view of the process, for readings not named here
        (``ps.rlimit``, ``ps.threads()``)."""
        if self._ps is None:
            self._ps = _process(self.pid)
        return self._ps

    def cpu(self) -> "CpuTime":
        """The CPU time used so far (``later.since(earlier)`` is what a run cost)."""
        return cpu_time(self.pid)

    def rss(self) -> int:
        """Resident set size in bytes."""
        return self.ps.memory_info().rss

    def fds(self) -> int:
        """Open file descriptors."""
        return self.ps.num_fds()

    def syscalls(self) -> tuple[int, int]:
        """Read-like and write-like system calls made so far."""
        return syscalls(self.pid)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BrokerProcess(NotifyProcess):
    """``decnet bus`` as a child process, on ``path`` (default: ``bus.sock`` in
    its private directory) with the extra command-line ``args``.

    ``pure`` runs the pure-Python hot path (True) or the compiled one (False);
    None inherits ``DECNET_BUS_NO_EXTENSIONS``. The log and the notify socket
    live apart from the socket's directory, which a test may want the broker
    to create.
    """

    log_name = "broker.log"

    def __init__(self, path: Optional[os.PathLike] = None, *args: str, loop: str = "uvloop", env: Optional[dict] = None,
                 pure: Optional[bool] = None, workdir: Optional[os.PathLike] = None) -> None:
        super().__init__(env, workdir)
        self.path = Path(path) if path is not None else self.workdir / "bus.sock"
        self.args = args
        self.loop = loop
        if pure is not None:
            self.env["DECNET_BUS_NO_EXTENSIONS"] = "1" if pure else "0"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "decnet", "bus", "--socket", str(self.path), "--loop", self.loop,
                "--group", NO_GROUP, *self.args]


def wait_ready(notify: socket.socket, proc: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT) -> list[str]:
    """Messages received on NOTIFY_SOCKET up to READY=1."""
    messages = []
    deadline = time.monotonic() + timeout
    notify.settimeout(0.1)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"{_name(proc)} exited with {proc.returncode} before READY=1:\n{log.read_text(errors='replace')}")
        try:
            message = notify.recv(4096).decode()
        except socket.timeout:
            continue
        messages.append(message)
        if "READY=1" in message.split("\n"):
            return messages
    stop_process(proc, signal.SIGKILL)
    raise StartError(f"no READY=1 within {timeout} s:\n{log.read_text(errors='replace')}")


def _name(proc: subprocess.Popen) -> str:
    """What the process runs, for messages: ``decnet bus bridge``, ``decnet web``, ..."""
    args = [str(a) for a in (proc.args if isinstance(proc.args, (list, tuple)) else [proc.args])]
    if len(args) > 2 and args[1] == "-m":  # python -m decnet web --uds ...: the words before the options
        args = list(itertools.takewhile(lambda a: not a.startswith("-"), args[2:]))
    return " ".join(args[:3]) or "the process"


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send ``sig`` to ``proc``, wait up to ``timeout`` s, then SIGKILL; always
    reaps. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def short_tmpdir(prefix: str = "dbus-") -> Path:
    """A private directory with a short path: sun_path holds 107 bytes at most."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# -- readings of any process


class CpuTime(NamedTuple):
    """User + system CPU seconds of a whole process, read two ways."""

    #: The scheduler's nanoseconds summed over the live threads
    #: (/proc/PID/task/*/schedstat); blind to threads that have exited.
    fine: float
    #: utime + stime, every thread that ever ran, in clock ticks (10 ms).
    coarse: float

    def since(self, before: "CpuTime") -> float:
        """CPU seconds used between ``before`` and this reading."""
        fine, coarse = self.fine - before.fine, self.coarse - before.coarse
        # schedstat misses threads that ended in between; trust the tick count then.
        return coarse if fine <= 0 or coarse - fine > 0.03 else fine


def cpu_time(pid: int) -> CpuTime:
    """The CPU time ``pid`` has used so far."""
    times = _process(pid).cpu_times()
    # psutil reads utime+stime in clock ticks only: a run of a few hundred
    # milliseconds wants the scheduler's own count, which only schedstat has.
    ns = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # the thread ended meanwhile, or the kernel keeps no schedstat
    except OSError:
        pass
    return CpuTime(ns / 1e9, times.user + times.system)


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    return _process(pid).memory_info().rss


def fds(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return _process(pid).num_fds()


def syscalls(pid: int) -> tuple[int, int]:
    """Read-like and write-like system calls ``pid`` made so far (Linux's
    syscr and syscw: read/write/readv/writev, not recv/send)."""
    io = _process(pid).io_counters()
    return io.read_count, io.write_count


def _process(pid: int):
    import psutil  # a test dependency: only the readings need it

    return psutil.Process(pid)
