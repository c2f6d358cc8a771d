"""Why a client cannot reach the broker, said in one line with the fix.

``UnixBus`` raises ``BusUnavailable`` with this line, and ``decnet bus pub``,
``sub`` and ``stats`` print it. Permission denied is told apart from "no
broker": which user this process runs as, which file refuses it (the socket,
or a directory on the way), that file's group and mode, and the fix.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Optional

from .config import FROM_ENV, GIVEN, RUN_DIR, RUN_DIR_EXISTS


def unreachable(path: Path, error: Optional[BaseException], source: str) -> str:
    """The one-line reason why the broker on ``path`` cannot be reached, after
    ``error`` (the last connection attempt's; None when none has failed yet),
    and how to fix it. ``source`` is why this path (``config.socket_choice``)."""
    if isinstance(error, PermissionError):
        return permission_denied(path)
    start = how_to_start(path, source)
    if isinstance(error, FileNotFoundError):
        return f"no broker on {path}: no such socket; {start}"
    if isinstance(error, ConnectionRefusedError):
        return f"no broker on {path}: connection refused (a socket left by a broker that is gone?); {start}"
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return f"the broker on {path} did not accept the connection in time (overloaded or stuck?)"
    if isinstance(error, OSError):
        reason = error.strerror or errno.errorcode.get(error.errno or 0, str(error))
        return f"cannot connect to {path}: {reason}; {start}"
    return f"no broker on {path}: {start}"


def how_to_start(path: Path, source: str) -> str:
    """How to start a broker on ``path``, repeating ``--socket`` when the path
    does not come from ``decnet bus``'s own default."""
    if source in (GIVEN, FROM_ENV):
        return f"start one with `decnet bus --socket {path}`"
    if source == RUN_DIR_EXISTS and path.parent == RUN_DIR:
        return "start one with `systemctl start decnet-bus` or `decnet bus`, or set DECNET_BUS_SOCKET"
    return "start one with `decnet bus`, or set DECNET_BUS_SOCKET"


def permission_denied(path: Path) -> str:
    """Why this process may not connect to ``path``, and the fix."""
    user = _user_name(os.geteuid())
    blocker = _refusing(path)
    what = "the socket" if blocker == path else f"its directory {blocker}"
    try:
        st = os.stat(blocker)
    except OSError:
        return f"permission denied on {path}: user {user} may not reach it"
    group = _group_name(st.st_gid)
    mode = f"mode {stat.S_IMODE(st.st_mode):04o}"
    # What the group needs: write on the socket, search on a directory.
    group_bit = stat.S_IWGRP if blocker == path else stat.S_IXGRP
    head = f"permission denied on {path}: {what} belongs to group {group} ({mode})"
    if not st.st_mode & group_bit:
        owner = _user_name(st.st_uid)
        return (f"{head}, which lets only its owner {owner} in; run as {owner}, or start the broker "
                f"with --mode 0660 --group GROUP for a group user {user} is in")
    if st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        return f"{head} and user {user} is in it, yet may not connect (an ACL or security policy?)"
    if _listed_in(user, st.st_gid):
        return f"{head}; user {user} is in it, but this session is not yet: log in again (or run `newgrp {group}`)"
    return f"{head} and user {user} is not in it; add it with `sudo usermod -aG {group} {user}`, then log in again"


def _refusing(path: Path) -> Path:
    """The first directory on the way to ``path`` this process may not search,
    else ``path`` itself."""
    for directory in reversed(path.parents):
        if not os.access(directory, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            return directory
    return path


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _listed_in(user: str, gid: int) -> bool:
    """Whether the account database puts ``user`` in group ``gid`` (a session
    started before ``usermod -aG`` does not have it yet)."""
    try:
        if user in grp.getgrgid(gid).gr_mem:
            return True
        return pwd.getpwnam(user).pw_gid == gid
    except KeyError:
        return False
