"""The process at the other end of a UNIX socket, as the kernel sees it.

``peercred`` is who it is (SO_PEERCRED: pid, uid, gid). ``PeerWatch`` says
whether it is working: a publisher whose send buffer stays full cannot tell
from the socket alone a broker that is slow (busy routing a large read, starved
of CPU, holding this publisher for a lagging subscriber) from one that is
stopped (SIGSTOP, a debugger, a deadlocked loop): neither reads for a while.
The kernel can: a working process spends time on a CPU or waiting for one
(/proc/PID/schedstat), a stopped or idle one spends neither.

The broker is on the same host, which is what makes asking possible. When the
kernel will not say (the broker in another PID namespace, /proc mounted with
hidepid, not Linux), ``PeerWatch.of`` returns None and the client judges by
its send buffer alone.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import NamedTuple, Optional

_PEERCRED = struct.Struct("3i")


def peercred(transport: asyncio.BaseTransport) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end; (0, -1, -1) if unknown."""
    sock = transport.get_extra_info("socket")
    try:
        return _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except (OSError, AttributeError):
        return (0, -1, -1)


class Sample(NamedTuple):
    """One reading of a process: its state letter (R running or runnable, S
    sleeping, D waiting on I/O, T/t stopped, Z/X dead) and the nanoseconds it
    has spent on a CPU plus waiting for one."""

    state: str
    busy_ns: int


class PeerWatch:
    """Readings of one process from /proc; ``sample()`` is None once it is gone
    (or its pid belongs to another process: the start time is checked)."""

    __slots__ = ("pid", "_start", "_schedstat")

    def __init__(self, pid: int, start: str) -> None:
        self.pid = pid
        self._start = start
        self._schedstat = True

    @classmethod
    def of(cls, transport: asyncio.BaseTransport) -> Optional["PeerWatch"]:
        """A watch on the peer of ``transport``, or None if the kernel does not
        let this process see it."""
        pid = peercred(transport)[0]
        if pid <= 0:
            return None
        fields = _stat(pid)
        if fields is None:
            return None
        watch = cls(pid, fields[19])
        return watch if watch.sample() is not None else None

    def sample(self) -> Optional[Sample]:
        fields = _stat(self.pid)
        if fields is None or fields[19] != self._start:
            return None
        busy = -1
        if self._schedstat:
            try:
                with open(f"/proc/{self.pid}/schedstat", "rb") as f:
                    on_cpu, waiting, _ = f.read().split()
                busy = int(on_cpu) + int(waiting)
            except (OSError, ValueError):
                self._schedstat = False
        if busy < 0:
            # No schedstat: CPU time in clock ticks (coarse; misses time spent
            # waiting for a CPU, which the state letter R still shows).
            busy = (int(fields[11]) + int(fields[12])) * 10_000_000
        return Sample(fields[0], busy)


def working(before: Sample, now: Sample) -> bool:
    """Did the process work between two samples, or is it about to? Running,
    runnable or in uninterruptible I/O now, or CPU time (or time waiting for a
    CPU) spent since ``before``."""
    return now.state in "RD" or now.busy_ns > before.busy_ns


def _stat(pid: int) -> Optional[list[str]]:
    """The fields of /proc/PID/stat after the command name (index 0 is the
    state); None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or ')'.
    return line[line.rfind(b")") + 2:].decode("ascii", "replace").split()
