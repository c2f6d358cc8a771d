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
import os
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
    """Readings of one process from /proc, through descriptors opened once
    (a reading is then one pread, a few µs; and a descriptor stays bound to
    the process it was opened on, so a pid used again by another process is
    never read). ``sample()`` is None once the process is gone; ``close()``
    when done."""

    __slots__ = ("pid", "_stat", "_schedstat")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._stat = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            self._schedstat: Optional[int] = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
        except OSError:
            self._schedstat = None

    @classmethod
    def of(cls, transport: asyncio.BaseTransport) -> Optional["PeerWatch"]:
        """A watch on the peer of ``transport``, or None if the kernel does not
        let this process see it."""
        pid = peercred(transport)[0]
        if pid <= 0:
            return None
        try:
            watch = cls(pid)
        except OSError:
            return None
        if watch.sample() is None:
            watch.close()
            return None
        return watch

    def sample(self) -> Optional[Sample]:
        if self._stat is None:
            return None
        try:
            line = os.pread(self._stat, 1024, 0)
            busy = -1
            if self._schedstat is not None:
                on_cpu, waiting, _ = os.pread(self._schedstat, 128, 0).split()
                busy = int(on_cpu) + int(waiting)
        except (OSError, ValueError):
            return None
        if not line:
            return None
        # The command name is in parentheses and may itself hold spaces or ')'.
        fields = line[line.rfind(b")") + 2:].split()
        if busy < 0:
            # No schedstat: CPU time in clock ticks (coarse; misses time spent
            # waiting for a CPU, which the state letter R still shows).
            busy = (int(fields[11]) + int(fields[12])) * 10_000_000
        return Sample(fields[0].decode("ascii", "replace"), busy)

    def close(self) -> None:
        for fd in (self._stat, self._schedstat):
            if fd is not None:
                os.close(fd)
        self._stat = self._schedstat = None


def working(before: Sample, now: Sample) -> bool:
    """Did the process work between two samples, or is it about to? Running,
    runnable or in uninterruptible I/O now, or CPU time (or time waiting for a
    CPU) spent since ``before``."""
    return now.state in "RD" or now.busy_ns > before.busy_ns

