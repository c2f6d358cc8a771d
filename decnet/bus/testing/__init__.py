"""A real broker for tests and benchmarks, here and in other DECNET workers:
``BrokerProcess`` runs ``decnet bus`` as a child process and reads what it
costs, ``Raw`` talks to it frame by frame.

    from decnet.bus.testing import BrokerProcess, Raw

    with BrokerProcess() as broker:            # READY=1 received
        raw = Raw(broker.path)                 # HELLO said
        raw.send(encode("SUB", "a.>"))
        raw.until_pong()
        print(broker.rss(), broker.fds(), broker.cpu())

Nothing in the bus imports this package. The readings need ``psutil`` (the
``test`` extra), imported on first use.
"""

from __future__ import annotations

from .process import (
    READY_TIMEOUT,
    BrokerProcess,
    CpuTime,
    NotifyProcess,
    StartError,
    cpu_time,
    fds,
    rss,
    short_tmpdir,
    stop_process,
    syscalls,
)
from .raw import Follower, Raw

__all__ = [
    "READY_TIMEOUT",
    "BrokerProcess",
    "CpuTime",
    "NotifyProcess",
    "Follower",
    "Raw",
    "StartError",
    "cpu_time",
    "fds",
    "rss",
    "short_tmpdir",
    "stop_process",
    "syscalls",
]
