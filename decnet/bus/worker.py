"""The life cycle of ``decnet bus``: loop choice, bind or socket activation,
systemd notification, heartbeat, signals, clean shutdown (docs/protocol.md §5)."""

from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import resource
import signal
import socket
import stat
from pathlib import Path
from typing import Awaitable, Callable, Optional

from . import __version__, systemd
from ._compat import ACCELERATED
from .config import BrokerConfig, socket_path
from .topics import SYSTEM_BUS_HEALTH
from .unix_server import Broker, BrokerProtocol

log = logging.getLogger("decnet.bus.broker")

# The kernel's limit on a UNIX socket path (sun_path), NUL included.
MAX_SOCKET_PATH = 107


class StartupError(Exception):
    """The broker cannot start; the message says why and what to do."""


def loop_factory(name: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop to run on: ``uvloop``, ``asyncio``, or ``auto`` (uvloop when it imports)."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise StartupError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def run(config: BrokerConfig) -> int:
    """Run the broker until SIGTERM/SIGINT; the process exit code."""
    return run_service(config.log_level, config.loop, lambda loop_name: _serve(config, loop_name))


def run_service(log_level: str, loop: str, serve: Callable[[str], Awaitable[Optional[int]]]) -> int:
    """The process of a service (the broker, the bridge): logging at
    ``log_level``, the event loop ``loop`` names, ``serve(loop_name)`` run on it
    to the end; its exit code (None counts as 0), or 1 after a StartupError,
    which is logged as one line."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        loop_name, factory = loop_factory(loop)
        event_loop = factory()
    except StartupError as error:
        log.error("%s", error)
        return 1
    try:
        return event_loop.run_until_complete(serve(loop_name)) or 0
    except StartupError as error:
        log.error("%s", error)
        return 1
    finally:
        event_loop.close()


async def _serve(config: BrokerConfig, loop_name: str) -> int:
    loop = asyncio.get_running_loop()
    _raise_nofile_limit(config.max_connections)
    fds = systemd.listen_fds()
    if fds:
        sock = socket.socket(fileno=fds[0])
        path = Path(sock.getsockname())
        owned = None  # systemd's socket: never ours to remove
        log.info("socket-activated on %s (fd %d)", path, fds[0])
    else:
        path = socket_path(config.socket)
        sock = _bind(path, config.mode, config.group)
        owned = os.lstat(path).st_ino
    broker = Broker(config, loop_name=loop_name, version=__version__)
    server = await loop.create_unix_server(lambda: BrokerProtocol(broker), sock=sock, backlog=1024)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    tasks = [asyncio.ensure_future(_heartbeat(broker, config.health_interval))]
    watchdog = systemd.watchdog_interval()
    if watchdog:
        tasks.append(asyncio.ensure_future(_watchdog(watchdog)))
    hot = "compiled" if ACCELERATED else "pure Python (DECNET_BUS_NO_EXTENSIONS or no extension)"
    log.info("decnet bus %s ready on %s: loop=%s hot path=%s pid=%d", __version__, path, loop_name, hot, os.getpid())
    systemd.notify(f"READY=1\nSTATUS=serving on {path} ({loop_name}, {'compiled' if ACCELERATED else 'pure'})\nMAINPID={os.getpid()}")

    await stopping.wait()

    # A second SIGTERM while stopping must not kill us: the loop's handlers
    # would be restored to the default action as it closes.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)
    systemd.notify("STOPPING=1")
    log.info("stopping: %d connections", len(broker.connections))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    server.close()
    await broker.shutdown()
    if owned is not None:
        _unlink_own_socket(path, owned)
    sock.close()
    log.info("stopped")
    return 0


async def _heartbeat(broker: Broker, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        broker.emit(SYSTEM_BUS_HEALTH, broker.health())


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def _bind(path: Path, mode: int, group: str) -> socket.socket:
    """Bind a listening socket at ``path``: refuse a live broker, replace a stale socket,
    never follow a symlink, create the file with ``mode`` and hand it to ``group``."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise StartupError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes, the limit of a UNIX socket")
    _make_parent(path.parent, group)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):
            raise StartupError(f"{path} is a symlink; refusing to follow it (remove it if it is yours)")
        if not stat.S_ISSOCK(st.st_mode):
            raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
        if _answers(path):
            raise StartupError(f"a broker already answers on {path}; not starting a second one")
        log.warning("removing stale socket %s (nothing answers on it)", path)
        try:
            os.unlink(path)
        except FileNotFoundError:  # another broker starting at the same moment got there first
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() creates the file: the umask gives it `mode` from birth, so it is
    # never reachable with wider permissions and needs no chmod afterwards.
    previous = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise StartupError(f"{path} was taken while starting: another broker is starting on it") from None
        raise StartupError(f"cannot bind {path}: {error.strerror}") from None
    finally:
        os.umask(previous)
    _give_to_group(path, group)
    sock.listen(1024)
    return sock


def _make_parent(parent: Path, group: str) -> None:
    """Create the socket's directory when missing (0750, handed to ``group``).
    An existing one (a symlink to one included) is used as it is: never
    chmod-ed nor chown-ed, but refused when anyone may swap it."""
    if parent.is_dir():
        _check_dirs(parent)
        return
    existing = next(p for p in parent.parents if p.is_dir())
    _check_dirs(existing, socket_dir=parent)  # what we create inherits its ancestors' safety
    # Our own umask while creating: the process's (systemd's UMask=0117, say)
    # could take the group's x bit and lock the group out. The directory is
    # 0750, missing ancestors 0755; never writable by others, whatever the umask.
    previous = os.umask(0o022)
    try:
        parent.mkdir(mode=0o750, parents=True)
    except OSError as error:
        raise StartupError(f"cannot create {parent}: {error.strerror}") from None
    finally:
        os.umask(previous)
    _give_to_group(parent, group)


def _check_dirs(directory: Path, socket_dir: Optional[Path] = None) -> None:
    """Refuse a socket directory that another user could swap for their own:
    it, or any directory above it (symlinks resolved), world-writable without
    the sticky bit. Warn where the socket's name could still be taken or the
    directory swapped: a sticky world-writable socket directory (/tmp), one
    owned by another user than root or us, a group-writable one.
    ``socket_dir``: the missing directory the socket will be in, when
    ``directory`` is its nearest existing ancestor."""
    ancestor_only = socket_dir is not None
    socket_dir = socket_dir or directory
    try:
        real = Path(os.path.realpath(directory))
        chain = [real, *real.parents]
        stats = [(d, os.lstat(d)) for d in chain]
    except OSError as error:
        raise StartupError(f"cannot check {directory}: {error.strerror}") from None
    trusted = {0, os.geteuid()}
    for d, st in stats:
        own = d == real and not ancestor_only
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            what = f"{socket_dir}" if own else f"{d} (above {socket_dir})"
            raise StartupError(f"{what} is world-writable: any user could replace the socket and pose as the broker; use a directory only the broker's user can write (e.g. /run/decnet)")
        if st.st_uid not in trusted:
            log.warning("%s is owned by uid %d: that user could swap the socket's directory; prefer one owned by root or the broker's user", d, st.st_uid)
        if own and st.st_mode & stat.S_IWOTH:
            log.warning("%s is world-writable (sticky): while the broker is down any user can take the socket's name there; prefer a directory only the broker's user can write (e.g. /run/decnet)", directory)
        elif own and st.st_mode & stat.S_IWGRP:
            log.warning("%s is group-writable: members of its group could replace the socket", directory)


def _give_to_group(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %r does not exist; %s keeps group %d (create the group, or pass --group)", group, path, os.lstat(path).st_gid)
        return
    try:
        os.chown(path, -1, gid, follow_symlinks=False)
    except OSError as error:
        log.warning("cannot give %s to group %r: %s", path, group, error.strerror)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        if isinstance(error, (TimeoutError, BlockingIOError)):  # alive but its backlog is full
            return True
        raise StartupError(f"cannot probe {path}: {error.strerror}") from None
    finally:
        probe.close()


def _unlink_own_socket(path: Path, inode: int) -> None:
    """Remove the socket file, unless something else has since taken the path."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _raise_nofile_limit(connections: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, connections + 64)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, want, error)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < connections + 64:
        log.warning("RLIMIT_NOFILE is %d: fewer than --max-connections %d can connect", soft, connections)
