"""Who may talk to the broker (docs/protocol.md §1, §5).

- The socket file is the authorization: 0660, group ``--group``. Proven with
  real accounts: a throwaway group and two throwaway users, one in the group
  and one not (root only: creating users and switching to them needs it).
- The socket's directory: created 0750 for the group whatever the umask; an
  existing one is never chmod-ed nor chown-ed (through a symlink neither), and
  refused when anyone may write it (warned about when it is sticky, like /tmp).
- The path itself is never followed when it is a symlink.
- ``system.bus.*`` is the broker's own: a client's PUB there never reaches
  anybody, so nobody can forge ``system.bus.health``; the rest of ``system.*``
  is open to every client.

(What test_worker.py and test_broker_protocol.py prove already is not repeated:
socket mode/group in a fresh directory, a symlink to a regular file at the path,
ERR reserved_topic on one PUB and the connection staying up, the heartbeat.)
"""

from __future__ import annotations

import asyncio
import errno
import grp
import io
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from decnet.bus import BusUnavailable, FakeBus, NullBus, TopicError, UnixBus
from decnet.bus import constants as C
from decnet.bus._compat import implementations
from decnet.bus._pure import encode
from decnet.bus.testing import BrokerProcess, Raw, short_tmpdir

ROOT = os.geteuid() == 0
NEEDS_ROOT = "needs root: creates throwaway users/groups and switches to them (CI runs as root)"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
# A uid/gid no account needs to hold: chown accepts any number.
FOREIGN = (4242, 4243)


def start_expecting_failure(path, *args):
    cmd = [sys.executable, "-m", "decnet", "bus", "--socket", str(path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def some_group() -> str:
    """A group that exists, is not root's, and that this process may hand a file to."""
    gid = os.getgid()
    if gid == 0:
        for candidate in (1, 2, 3):  # daemon, bin, sys on Debian and Red Hat alike
            try:
                return grp.getgrgid(candidate).gr_name
            except KeyError:
                continue
        pytest.skip("no non-root group exists to hand files to")
    return grp.getgrgid(gid).gr_name


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner_of(path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.fixture
def basedir():
    """A directory other users can traverse but not write (mkdtemp's is 0700)."""
    path = short_tmpdir()
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- throwaway accounts


@dataclass
class Accounts:
    group: str  # the bus group (--group)
    gid: int
    primary_gid: int  # both users' primary group: not the bus group
    member: str
    member_uid: int
    outsider: str
    outsider_uid: int


def _tool(name: str) -> str:
    found = shutil.which(name, path=SBIN_PATH)
    if found is None:
        pytest.skip(f"{name} is not installed: cannot create throwaway accounts")
    return found


def _admin(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def accounts(request) -> Accounts:
    """A throwaway group and two throwaway system users, one in it and one not.

    Every account is removed again, whatever happens: each removal is
    registered before the account is created, so it runs even if a later
    step of the setup fails."""
    if not ROOT:
        pytest.skip(NEEDS_ROOT)
    useradd, userdel, groupadd, groupdel = (_tool(n) for n in ("useradd", "userdel", "groupadd", "groupdel"))
    tag = secrets.token_hex(3)
    group, primary, member, outsider = (f"dn{kind}{tag}" for kind in ("g", "p", "m", "o"))

    def remove(tool: str, name: str) -> None:
        result = _admin(tool, name)
        if result.returncode not in (0, 6):  # 6: already gone
            print(f"warning: {tool} {name} failed ({result.returncode}): {result.stderr.strip()}", file=sys.stderr)

    for name in (group, primary):
        request.addfinalizer(lambda name=name: remove(groupdel, name))
        result = _admin(groupadd, "--system", name)
        if result.returncode:
            pytest.skip(f"groupadd {name} failed: {result.stderr.strip()}")
    for name, extra in ((member, ["-G", group]), (outsider, [])):
        # Users go before groups (finalizers run last-registered first).
        request.addfinalizer(lambda name=name: remove(userdel, name))
        shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
        result = _admin(useradd, "--system", "--no-create-home", "--no-user-group", "--shell", shell, "-g", primary, *extra, name)
        if result.returncode:
            pytest.skip(f"useradd {name} failed: {result.stderr.strip()}")
    return Accounts(
        group=group,
        gid=grp.getgrnam(group).gr_gid,
        primary_gid=grp.getgrnam(primary).gr_gid,
        member=member,
        member_uid=pwd.getpwnam(member).pw_uid,
        outsider=outsider,
        outsider_uid=pwd.getpwnam(outsider).pw_uid,
    )


def in_child(uid: int, gid: int, groups: list[int], body) -> dict:
    """Run ``body(result)`` in a forked child that holds exactly ``uid``,
    ``gid`` and ``groups``; the dict it filled, once the child has exited.
    Anything the child raised fails the test here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            result: dict = {}
            try:
                os.setgroups(groups)
                os.setgid(gid)
                os.setuid(uid)
                body(result)
            except BaseException as error:  # noqa: BLE001 - reported to the parent
                result["crash"] = repr(error)
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    data = b"".join(chunks)
    assert data, "the child reported nothing"
    result = json.loads(data)
    assert "crash" not in result, result
    return result


def as_user(uid: int, gid: int, groups: list[int], path: Path, name: str) -> dict:
    """As ``uid`` with ``gid`` and ``groups`` only: stat the socket, connect,
    HELLO, publish ``access.<name>``, BYE. What happened."""

    def body(result: dict) -> None:
        result["ids"] = [os.getuid(), os.getgid(), sorted(os.getgroups())]
        try:
            os.stat(path)
            result["stat"] = True
        except OSError as error:
            result["stat"] = errno.errorcode[error.errno]
        try:
            raw = Raw(path, name=name, timeout=15)
        except OSError as error:
            result["connect"] = errno.errorcode.get(error.errno, str(error))
        else:
            result["connect"] = "ok"
            result["hello"] = raw.server
            raw.pub(f"access.{name}", {"uid": os.getuid()})
            result["errors"] = [bytes(f[2]).decode() for f in raw.until_pong() if f[0] == "ERR"]
            raw.send(encode("BYE"))
            raw.closed()

    return in_child(uid, gid, groups, body)


@pytest.mark.parametrize("layout", ["existing-0755-dir", "broker-made-dir", "mode-0600"])
def test_group_member_connects_and_an_outsider_gets_eacces(accounts, basedir, layout):
    """The kernel enforces the socket's mode and group: a user in the group
    connects, says HELLO and publishes; a user outside it cannot even connect
    (EACCES), and the broker never sees it. With --mode 0600 nobody but the
    broker's own user connects: the mode is the authorization."""
    args = ["--group", accounts.group]
    if layout == "broker-made-dir":
        path = basedir / "run" / "bus.sock"  # the broker creates run/: 0750, the bus group
    else:
        path = basedir / "bus.sock"  # an existing 0755 directory: only the socket's mode stands guard
    if layout == "mode-0600":
        args += ["--mode", "0600"]
    with BrokerProcess(path, *args) as proc:
        st = os.stat(path)
        assert st.st_gid == accounts.gid
        assert mode_of(path) == (0o600 if layout == "mode-0600" else 0o660)
        if layout == "broker-made-dir":
            assert mode_of(path.parent) == 0o750 and os.stat(path.parent).st_gid == accounts.gid
        watcher = Raw(path, name="watcher")
        watcher.send(encode("SUB", "access.>"))
        watcher.until_pong()

        member = as_user(accounts.member_uid, accounts.primary_gid, [accounts.gid], path, "member")
        outsider = as_user(accounts.outsider_uid, accounts.primary_gid, [], path, "outsider")

        assert member["ids"] == [accounts.member_uid, accounts.primary_gid, [accounts.gid]]
        assert outsider["ids"] == [accounts.outsider_uid, accounts.primary_gid, []]
        if layout == "existing-0755-dir":
            assert outsider["stat"] is True  # the directory lets it through: the socket's mode stops it
        assert outsider["connect"] == "EACCES", outsider
        if layout == "mode-0600":
            assert member["connect"] == "EACCES", member
            expected = []
        else:
            assert member["connect"] == "ok", member
            assert member["hello"]["server"] == "decnet-bus" and member["errors"] == []
            expected = [("access.member", {"uid": accounts.member_uid})]
        got = [(f[1], orjson.loads(f[2])) for f in watcher.until_pong() if f[0] == "EVT"]
        assert got == expected
        log = proc.output()
    # SO_PEERCRED: the broker logged who connected; the outsider never got that far.
    assert ("'member' pid=" in log and f"uid={accounts.member_uid} " in log) == (layout != "mode-0600")
    assert f"uid={accounts.outsider_uid} " not in log


def _warm_up(args: tuple[str, ...]) -> None:
    """Run ``decnet ARGS`` once here, against a socket that does not exist (it
    fails at once: no broker), so that everything its path imports, some of it
    only when a command runs (typer, pydantic), is in ``sys.modules`` before
    the fork: a child that cannot read the interpreter's files finds it there."""
    from decnet.cli import main

    warm = list(args)
    warm[warm.index("--socket") + 1] = f"/nonexistent-{secrets.token_hex(4)}/bus.sock"
    saved = sys.argv, sys.stdout, sys.stderr
    sys.argv, sys.stdout, sys.stderr = ["decnet", *warm], io.StringIO(), io.StringIO()
    try:
        main()
    except SystemExit:
        pass
    finally:
        sys.argv, sys.stdout, sys.stderr = saved


def decnet_as(uid: int, gid: int, groups: list[int], *args: str) -> tuple[int, str]:
    """``decnet ARGS`` run as exactly ``uid``, ``gid`` and ``groups``: its exit
    code and what it printed. In a forked child (this interpreter may live
    where other users cannot execute it), through the console script's main().
    What it imports is imported here first: the child may not read the
    interpreter's files either."""
    import decnet.cli.root  # noqa: F401
    from decnet.bus import worker

    worker.loop_factory("auto")
    _warm_up(args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(read_end)
            out = os.fdopen(write_end, "w")
            sys.stdout = sys.stderr = out
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            sys.argv = ["decnet", *args]
            try:
                from decnet.cli import main

                main()
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
            except BaseException as error:  # noqa: BLE001 - reported to the parent
                out.write(f"crash: {error!r}\n")
            out.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.mark.parametrize("layout", ["existing-0755-dir", "broker-made-dir", "mode-0600", "not-logged-in-again"])
def test_a_refused_user_is_told_permission_denied_with_the_group_and_the_fix(accounts, basedir, layout):
    """Not "no broker": one line naming the socket, the file that refuses (the
    socket, or its directory), its group and mode, the user, and the fix, from
    ``decnet bus pub``, ``sub`` and ``stats`` alike (exit 1)."""
    args = ["--group", accounts.group]
    path = basedir / ("run" if layout == "broker-made-dir" else "") / "bus.sock"
    if layout == "mode-0600":
        args += ["--mode", "0600"]
    # The member, without the group in its session: as after `usermod -aG` without logging in again.
    uid, user = ((accounts.member_uid, accounts.member) if layout in ("mode-0600", "not-logged-in-again")
                 else (accounts.outsider_uid, accounts.outsider))
    group, me = accounts.group, pwd.getpwuid(os.geteuid()).pw_name
    expected = {
        "existing-0755-dir": f"the socket belongs to group {group} (mode 0660) and user {user} is not in it; "
                             f"add it with `sudo usermod -aG {group} {user}`, then log in again",
        "broker-made-dir": f"its directory {path.parent} belongs to group {group} (mode 0750) and user {user} is "
                           f"not in it; add it with `sudo usermod -aG {group} {user}`, then log in again",
        "mode-0600": f"the socket belongs to group {group} (mode 0600), which lets only its owner {me} in; run as "
                     f"{me}, or start the broker with --mode 0660 --group GROUP for a group user {user} is in",
        "not-logged-in-again": f"the socket belongs to group {group} (mode 0660); user {user} is in it, but this "
                               f"session is not yet: log in again (or run `newgrp {group}`)",
    }[layout]
    with BrokerProcess(path, *args):
        for command in (["pub", "a.b", "{}"], ["sub", "a"], ["stats"]):
            code, output = decnet_as(uid, accounts.primary_gid, [], "bus", *command, "--socket", str(path))
            assert (code, output.splitlines()) == (1, [f"decnet: permission denied on {path}: {expected}"]), output


def test_the_library_says_permission_denied_too(accounts, basedir):
    """UnixBus: connect() and flush() raise BusUnavailable with the same line;
    a worker that only publishes drops (counted) and logs it once as a warning."""
    path = basedir / "bus.sock"

    def body(result: dict) -> None:
        warnings: list = []
        handler = logging.Handler()
        handler.emit = lambda record: warnings.append(record.getMessage())
        logging.getLogger("decnet.bus.client").addHandler(handler)

        async def main():
            bus = UnixBus(path)
            for i in range(3):
                await bus.publish("a.b", i)
            result["counts"] = [bus.published, bus.dropped]
            for call in (bus.connect, bus.flush):
                try:
                    await call()
                except BusUnavailable as error:
                    result.setdefault("raised", []).append(str(error))
            await bus.close()

        asyncio.run(main())
        result["warnings"] = warnings

    with BrokerProcess(path, "--group", accounts.group):
        result = in_child(accounts.outsider_uid, accounts.primary_gid, [], body)
    line = (f"permission denied on {path}: the socket belongs to group {accounts.group} (mode 0660) and user "
            f"{accounts.outsider} is not in it; add it with `sudo usermod -aG {accounts.group} {accounts.outsider}`, "
            f"then log in again")
    assert result == {"counts": [0, 3], "raised": [line, line], "warnings": [line]}


# -- the socket's directory


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o117, 0o077], ids=lambda m: f"umask{m:04o}")
def test_broker_made_directories_are_0750_for_the_group_whatever_the_umask(sockdir, umask):
    """A missing directory is created 0750 and handed to --group (ancestors it
    has to create too: 0755, never writable by others). systemd's UMask=0117
    must not take the group's x bit, nor a umask of 0 make anything writable."""
    group = some_group()
    path = sockdir / "a" / "b" / "bus.sock"
    proc = BrokerProcess(path, "--group", group)
    proc.start(umask=umask)
    try:
        assert mode_of(sockdir / "a") == 0o755
        assert mode_of(path.parent) == 0o750
        assert os.stat(path.parent).st_gid == grp.getgrnam(group).gr_gid
        assert mode_of(path) == 0o660 and os.stat(path).st_gid == grp.getgrnam(group).gr_gid
        assert Raw(path).server
    finally:
        proc.stop()


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755, 0o1755], ids=lambda m: f"{m:04o}")
def test_an_existing_directory_keeps_its_mode_and_owner(sockdir, mode):
    """The broker chmods and chowns only what it has just created: the socket's
    directory, when it exists, stays exactly as it was (before, during, after)."""
    owner = FOREIGN if ROOT else (os.getuid(), os.getgid())
    parent = sockdir / "existing"
    parent.mkdir()
    os.chown(parent, *owner)
    parent.chmod(mode)
    path = parent / "bus.sock"
    with BrokerProcess(path, "--group", some_group()):
        assert (mode_of(parent), owner_of(parent)) == (mode, owner)
        assert mode_of(path) == 0o660 and owner_of(path)[0] == os.geteuid()
        assert Raw(path).server
    assert (mode_of(parent), owner_of(parent)) == (mode, owner)
    assert not path.exists() and parent.is_dir()  # only its own socket is removed


def test_a_symlinked_directory_is_followed_and_left_alone(sockdir):
    """Decision: a symlink among the directories is followed (as /var/run ->
    /run must be). The checks apply to the directory it leads to, which is not
    chmod-ed nor chown-ed; the link itself is untouched. Only the socket's own
    name is never followed (see the next tests)."""
    owner = FOREIGN if ROOT else (os.getuid(), os.getgid())
    real = sockdir / "real"
    real.mkdir()
    os.chown(real, *owner)
    real.chmod(0o755)
    link = sockdir / "link"
    link.symlink_to(real)
    link_owner = owner_of(link)
    path = link / "bus.sock"
    with BrokerProcess(path, "--group", some_group()):
        assert stat.S_ISSOCK(os.lstat(real / "bus.sock").st_mode)
        assert (mode_of(real), owner_of(real)) == (0o755, owner)
        assert link.is_symlink() and owner_of(link) == link_owner
        assert Raw(path).server
    assert not (real / "bus.sock").exists()
    assert (mode_of(real), owner_of(real)) == (0o755, owner)


def test_a_dangling_symlinked_directory_is_refused(sockdir):
    """A parent that is a symlink to nowhere is not created through the link."""
    link = sockdir / "link"
    link.symlink_to(sockdir / "missing")
    result = start_expecting_failure(link / "bus.sock")
    assert result.returncode == 1, result.stderr
    assert f"cannot create {link}" in result.stderr and "Traceback" not in result.stderr
    assert link.is_symlink() and not (sockdir / "missing").exists()


@pytest.mark.parametrize("via", ["directory", "symlink"])
def test_a_world_writable_directory_is_refused(sockdir, via):
    """Anyone could unlink the socket there and listen in its place, posing as
    the broker: refused with one clear line, whether named directly or through
    a symlink, and nothing is created or changed in it."""
    open_dir = sockdir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    parent = open_dir
    if via == "symlink":
        parent = sockdir / "link"
        parent.symlink_to(open_dir)
    result = start_expecting_failure(parent / "bus.sock")
    assert result.returncode == 1, result.stderr
    assert f"{parent} is world-writable" in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "world-writable" in line]) == 1
    assert list(open_dir.iterdir()) == []
    assert mode_of(open_dir) == 0o777


@pytest.mark.parametrize("socket_dir", ["existing", "missing"])
def test_a_world_writable_directory_above_the_socket_is_refused(sockdir, socket_dir):
    """Whoever can write a directory above the socket's can rename the socket's
    directory away and put their own in its place: refused too, and the broker
    creates nothing under it."""
    open_dir = sockdir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    inner = open_dir / "decnet"
    if socket_dir == "existing":
        inner.mkdir(mode=0o750)
    result = start_expecting_failure(inner / "bus.sock")
    assert result.returncode == 1, result.stderr
    assert f"{open_dir} (above {inner}) is world-writable" in result.stderr and "Traceback" not in result.stderr
    assert list(open_dir.iterdir()) == ([inner] if socket_dir == "existing" else [])
    if socket_dir == "existing":
        assert list(inner.iterdir()) == []


def test_a_sticky_world_writable_directory_is_a_warning(sockdir):
    """A /tmp-like directory (world-writable, sticky): others cannot remove or
    rename the broker's socket, so it starts, but it warns that the name is up
    for grabs while the broker is down. The directory keeps its mode."""
    tmp_like = sockdir / "tmp"
    tmp_like.mkdir()
    tmp_like.chmod(0o1777)
    path = tmp_like / "bus.sock"
    with BrokerProcess(path) as proc:
        assert Raw(path).server
        assert mode_of(path) == 0o660
    assert f"{tmp_like} is world-writable (sticky)" in proc.output()
    assert mode_of(tmp_like) == 0o1777


# -- the socket's own name


@pytest.mark.parametrize("target", ["stale-socket", "nowhere"])
def test_a_symlink_at_the_socket_path_is_never_followed(sockdir, target):
    """Not to a stale socket (which the broker would otherwise replace), not
    to nowhere (which bind would create): refused, and the target keeps its
    existence, mode and owner."""
    elsewhere = sockdir / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.sock"
    if target == "stale-socket":
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(victim))
        dead.close()
        victim.chmod(0o600)
        before = (mode_of(victim), owner_of(victim), os.lstat(victim).st_ino)
    path = sockdir / "bus.sock"
    path.symlink_to(victim)
    result = start_expecting_failure(path, "--group", some_group())
    assert result.returncode == 1, result.stderr
    assert "symlink" in result.stderr and "Traceback" not in result.stderr
    assert path.is_symlink() and os.readlink(path) == str(victim)
    if target == "stale-socket":
        assert (mode_of(victim), owner_of(victim), os.lstat(victim).st_ino) == before
    else:
        assert not os.path.lexists(victim)


# -- system.bus.* belongs to the broker


def _hot_path_env(hot: str) -> dict:
    if hot == "compiled" and "compiled" not in implementations():
        pytest.skip("compiled extension not built")
    return {"DECNET_BUS_NO_EXTENSIONS": "1" if hot == "pure" else "0"}


@pytest.mark.parametrize("hot", ["compiled", "pure"])
def test_a_forged_heartbeat_never_reaches_anybody(sockdir, hot):
    """Reserved PUBs amid valid ones in one write (relay() hands them back
    mid-batch): each gets ERR reserved_topic, none reaches any subscriber (the
    forger's own echo included), the valid ones around them still go through
    in order, and a SUB to system.bus.health still gets the broker's genuine
    heartbeat."""
    mark = secrets.token_hex(8).encode()
    forged = orjson.dumps({"v": 1, "ts": 0, "uptime_s": 0, "connections": 0, "forged": mark.decode()})
    with BrokerProcess(sockdir / "bus.sock", "--health-interval", "0.2", env=_hot_path_env(hot)) as proc:
        sub = Raw(proc.path, name="sub")
        sub.send(encode("SUB", "system.bus.health"), encode("SUB", "system.bus.>"), encode("SUB", ">"))
        sub.until_pong()
        forger = Raw(proc.path, name="forger")
        forger.send(encode("SUB", ">"))
        forger.until_pong()
        forger.send(
            encode("PUB", "ok.1", b"1"),
            encode("PUB", "system.bus.health", forged),
            encode("PUB", "system.bus.x.y", forged),
            encode("PUB", "ok.2", b"2"),
        )
        to_forger = forger.until_pong()
        to_sub = sub.until_pong()  # after the forger's PONG: anything routed is queued before it
        errors = [orjson.loads(f[2]) for f in to_forger if f[0] == "ERR"]
        assert [e["code"] for e in errors] == [C.E_RESERVED_TOPIC] * 2
        assert "system.bus.health" in errors[0]["message"] and "system.bus.x.y" in errors[1]["message"]
        for frames in (to_forger, to_sub):
            assert not any(mark in bytes(f[2]) for f in frames)
            assert [f[1] for f in frames if f[0] == "EVT" and not f[1].startswith(C.RESERVED_PREFIX)] == ["ok.1", "ok.2"]
        while True:  # the genuine heartbeat, on the subscription to system.bus.health
            verb, topic, body = sub.frame()
            if topic == "system.bus.health":
                break
        health = orjson.loads(body)
        assert "forged" not in health and health["uptime_s"] > 0 and health["connections"] == 2
        assert health["accelerated"] is (hot == "compiled")


def test_the_rest_of_system_is_open_to_clients(broker):
    """Only the ``system.bus.`` prefix is reserved: ``system.log`` and other
    ``system.*`` topics (``system.busy.x`` included: the prefix is token-wise)
    are ordinary topics any client publishes on."""
    assert C.RESERVED_PREFIX == "system.bus."
    sub, pub = Raw(broker.path), Raw(broker.path)
    sub.send(encode("SUB", "system.*"), encode("SUB", "system.busy.>"))
    sub.until_pong()
    for topic in ("system.log", "system.audit", "system.busy.x"):
        pub.pub(topic, {"msg": topic})
    assert pub.until_pong() == []
    assert [(f[0], f[1]) for f in sub.until_pong() if f[1] != "system.bus.health"] == [
        ("EVT", "system.log"),
        ("EVT", "system.audit"),
        ("EVT", "system.busy.x"),
    ]


@pytest.mark.parametrize("kind", ["unix", "fake", "null"])
def test_the_client_library_refuses_reserved_topics_up_front(sockdir, kind):
    """Every Bus refuses a publish on system.bus.* itself (TopicError, code
    reserved_topic) before anything is sent, counted or delivered."""

    async def main():
        bus = {"unix": lambda: UnixBus(sockdir / "nobody.sock"), "fake": FakeBus, "null": NullBus}[kind]()
        for topic in ("system.bus.health", "system.bus.x.y"):
            with pytest.raises(TopicError) as caught:
                await bus.publish(topic, {"v": 1})
            assert caught.value.code == C.E_RESERVED_TOPIC
        assert (bus.published, bus.dropped) == (0, 0)  # refused: neither sent nor a drop
        if kind == "fake":
            assert bus.events == []
            async with bus.subscribe(">") as sub:
                await bus.publish("system.log", {"ok": True})
                assert (await asyncio.wait_for(sub.__anext__(), 10)).topic == "system.log"
        await bus.close()

    asyncio.run(main())
