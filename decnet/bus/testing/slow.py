"""Make a process slow without stopping it for good, for tests of flow control.

``cpu_quota`` puts it in a cgroup with a CPU quota: it runs for ``share`` of
every ``period`` and waits, runnable, for the rest — a broker starved of CPU
on a loaded machine, made repeatable. ``stop_bursts`` stops and continues it
(SIGSTOP/SIGCONT) in short bursts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


class Unsupported(Exception):
    """This machine will not let the test set a CPU quota (no writable cgroup
    with the cpu controller); the message says why."""


class Quota:
    """A cgroup holding one process under a CPU quota."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def throttled(self) -> int:
        """How many periods the process was held back for having used its share."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        return 0


@contextlib.contextmanager
def cpu_quota(pid: int, share: float, period: float = 0.25) -> Iterator[Quota]:
    """Hold ``pid`` to ``share`` (0–1) of one CPU per ``period`` seconds for the
    ``with`` block: it runs ``share * period``, then waits, runnable, for the
    rest of the period. Unsupported if no cgroup can be made here."""
    period_us = int(period * 1e6)
    quota_us = max(1000, int(share * period_us))
    name = f"decnet-test-{os.getpid()}-{pid}"
    if (_V1 / "cgroup.procs").exists():
        path, v2 = _V1 / name, False
    elif "cpu" in _read(_V2 / "cgroup.subtree_control").split():
        path, v2 = _V2 / name, True
    else:
        raise Unsupported("no cgroup with the cpu controller (v1 /sys/fs/cgroup/cpu, or cpu enabled in the v2 root)")
    home = _cgroup_of(pid, v2)
    try:
        path.mkdir()
        if v2:
            (path / "cpu.max").write_text(f"{quota_us} {period_us}")
        else:
            (path / "cpu.cfs_period_us").write_text(str(period_us))
            (path / "cpu.cfs_quota_us").write_text(str(quota_us))
        (path / "cgroup.procs").write_text(str(pid))
    except OSError as error:
        _remove(path, home, pid)
        raise Unsupported(f"cannot set a CPU quota in {path}: {error.strerror}") from None
    try:
        yield Quota(path)
    finally:
        _remove(path, home, pid)


def _remove(path: Path, home: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        (home / "cgroup.procs").write_text(str(pid))
    with contextlib.suppress(OSError):
        path.rmdir()


def _cgroup_of(pid: int, v2: bool) -> Path:
    """The cgroup directory ``pid`` is in now, to put it back afterwards."""
    for line in _read(Path(f"/proc/{pid}/cgroup")).splitlines():
        _, controllers, where = line.split(":", 2)
        if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
            return (_V2 if v2 else _V1) / where.lstrip("/")
    return _V2 if v2 else _V1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class Bursts:
    """What ``stop_bursts`` did: how many stops, and the longest one."""

    def __init__(self) -> None:
        self.count = 0
        self.longest = 0.0


# The driver is a process of its own, real-time when allowed: a thread of the
# test would wait for the GIL behind the very publisher it is testing, and a
# loaded machine would stretch its short stops into long ones.
_DRIVER = """
import os, select, signal, sys, time
pid, stopped, running = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
except (OSError, AttributeError):
    pass
def rest(seconds):
    return bool(select.select([sys.stdin], [], [], seconds)[0])  # stdin closed: done
count, longest, done = 0, 0.0, False
while not done:
    began = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    if not count:
        print("stopped", flush=True)
    try:
        done = rest(stopped)
    finally:
        os.kill(pid, signal.SIGCONT)
    count, longest = count + 1, max(longest, time.monotonic() - began)
    done = done or rest(running)
print(count, longest, flush=True)
"""


@contextlib.contextmanager
def stop_bursts(pid: int, stopped: float, running: float) -> Iterator[Bursts]:
    """For the ``with`` block, stop ``pid`` for ``stopped`` seconds, let it run
    for ``running``, and again; it is left running. ``Bursts`` tells, after the
    block, how many stops there were and the longest as it happened. The
    block starts with the first stop under way."""
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(pid), str(stopped), str(running)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    bursts = Bursts()
    try:
        driver.stdout.readline()  # the first stop has begun
        yield bursts
    finally:
        out, _ = driver.communicate("", timeout=30)
        count, longest = out.split()
        bursts.count, bursts.longest = int(count), float(longest)
