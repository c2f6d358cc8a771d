"""The two pieces of systemd the broker speaks: sd_notify and socket activation.

A few lines each; no dependency (the protocol is a datagram and two variables).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("decnet.bus.systemd")

LISTEN_FDS_START = 3


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to ``$NOTIFY_SOCKET``; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as error:  # systemd went away or never listened: not worth dying for
        log.debug("sd_notify %r to %s failed: %s", state, address, error)
        return False
    return True


def listen_fds() -> list[int]:
    """The file descriptors systemd passed to this process (socket activation), or []."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    # Children we might start must not believe the sockets are theirs.
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return list(range(LISTEN_FDS_START, LISTEN_FDS_START + count))


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings systemd expects (half its timeout), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
