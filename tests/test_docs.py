"""Every code block of README.md and docs/*.md runs as written, against a real
broker, and prints what the text around it promises.

A block is treated by its fence's language:

- ``python``: a program. If its first line names a file (``# worker.py``) it
  is saved under that name for the shell block that runs it (which must
  exist); otherwise it is run on its own with this virtualenv's python.
- ``pycon``: an interactive session, checked by ``python -m doctest``: every
  output must be the one shown.
- ``sh``: each line (``\\``-continued lines joined) runs with bash, one after
  the other, in the document's session (below).
- ``text``, ``mermaid`` (a diagram) or no language: not code. Any other
  language fails the test, so that no block escapes it by accident.

The shell blocks of one document are one reader's session, in the document's
order (a block run on its own first runs the earlier shell blocks of its
document, as the reader would have):

- An assignment, ``export NAME=...`` or ``NAME=$(...)``, carries over to the
  following lines and blocks of the document (the reader keeps the same
  ``DECNET_JWT_SECRET`` in each terminal, as the text says). Both kinds reach
  the later commands' environment.
- What the reader leaves running in another terminal runs in the background
  until the end of the document's session, as does a line ending in ``&``;
  the next line runs once it is ready, as the process itself says:
  - ``decnet bus sub`` without ``--count`` (until Ctrl-C): once the
    heartbeat of ITS broker (``--socket``, else ``$DECNET_BUS_SOCKET``)
    counts one more connection and one more subscription than the heartbeat
    before it started (which counts the test's own client, and no command
    that exited earlier: the broker had its connection's end before the
    test's client's first frame).
  - ``decnet web``, and the broker ``decnet bus``: once it said READY=1 on
    the ``NOTIFY_SOCKET`` the test gives it (its systemd readiness, sent once
    it listens) and a connection to its address succeeds. Either runs until
    a later one of the session wants the same address: then the reader stops
    it (and what was started after it) with Ctrl-C first.
  - ``decnet bus bridge``: once it said READY=1 (``Type=notify`` too); when
    its ``--nats`` names the port of a ``nats-server`` this session started,
    also once it is connected both ways: its first ``gap`` notice (reason
    ``connect``, sent once its NATS subscriptions are live, after its local
    export subscription) or a heartbeat with ``"live": true``, on
    ``system.bridge.<name>.*`` of its local broker, which the test subscribes
    to before starting it. A bridge given no such server (README's) keeps
    trying to reach NATS, by design: READY=1 is all it says.
  - ``nats-server``: once its port accepts a connection and answers with its
    ``INFO``. When it is not installed here, the document's blocks from the
    one that runs it on are skipped with the reason (CI installs it).
  - ``curl -N`` (an event stream): once curl has printed the stream's
    ``stream.ready`` frame, so every event published after it is on the
    stream.
  At the end of the session (after the document's last shell block) the
  test first makes sure what was published has arrived: it publishes a
  marker event (payload ``{"docs_test":"marker"}``) on the topic and the
  broker of the session's last ``decnet bus pub``, and waits until every
  running ``decnet bus sub`` whose pattern matches that topic has printed it.
  ``decnet bus pub`` exits once its broker has the event, and events reach
  a subscriber in the order that broker received them, through the bridges
  too (one connection each way, read in order): so the reader's event, and
  any second copy a bridge would make of it, came before the marker, and a
  promise of "once" is checked with no such copy still on its way. Then
  each background process gets Ctrl-C, latest first, and its exit and
  output are checked (what it promises to print only when the session ran
  to the document's last shell block: ``-k`` may run only some of them).

The docs serve ``decnet web`` on the TCP port 8080 (its default), and
docs/federation.md its ``nats-server`` on 4333. This machine may be running
something else there, or another run of these tests, so each document gets,
for each of those ports it uses, a free port the kernel picks, substituted in
every command line of that document (the reader's URLs included); a ``decnet
web`` that names neither ``--port`` nor ``--uds`` is given ``--port``.
Likewise a path under ``/tmp/`` (docs/federation.md's sockets in
``/tmp/decnet-fed``) is one under a private directory of the session, made
at its start and removed at its end: two runs at once would otherwise share
the sockets, and the brokers create ``decnet-fed`` in it as they would in
``/tmp``. PROMISES are keyed by the lines as written.

Everything runs in one temporary directory, where ``.venv`` points at the
virtualenv running the tests (so ``.venv/bin/decnet`` is this install, also in
CI's pure-Python run, which has no ``.venv``), with ``DECNET_BUS_SOCKET`` set
to a broker that ``BrokerProcess`` started for this module, and no
``DECNET_JWT_SECRET`` but the one the docs export. Each command must exit 0
(one stopped by Ctrl-C: 0 or 130; ``decnet web``, the broker and the bridge
exit 0; ``curl`` and ``nats-server`` may die of the SIGINT) with no
traceback; what a command promises to print is in ``PROMISES`` below.

A block that must not run here carries, on the line right above its fence,

    <!-- not run: REASON -->

which a rendered page does not show. The test reports it as skipped with
REASON (``pytest -ra`` lists them). What is not run, and why: the ``make``
targets (they install into ``.venv`` and run for minutes, or a broker until
Ctrl-C), installs (``pip install``, the system-wide steps of docs/deploy.md,
which also need root and systemd), ``systemd-analyze verify`` on the units
(tests/test_deploy.py runs it, on copies pointed at this install), the
bridges of a production federation (hosts ``nats1``/``nats2``, certificates,
root and systemd; tests/test_bridge.py runs TLS and users on local servers), the
benchmark commands (minutes, and peers that bench/peers.sh installs) and the
long reliability runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import pytest

from decnet.bus import UnixBus, matches
from decnet.bus.bridge import gap_topic, health_topic
from decnet.bus.bridge.config import default_name
from decnet.bus.testing import BrokerProcess, short_tmpdir
from decnet.bus.topics import SYSTEM_BUS_HEALTH
from decnet.web.config import WebConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
SHELL = {"sh", "bash", "shell"}
NOT_CODE = {"", "text", "mermaid"}
TIMEOUT = 30.0
#: The port the docs serve ``decnet web`` on (its default), replaced by a free one.
DOCS_PORT = WebConfig().port
#: The port ``nats-server`` listens on unless ``-p`` says otherwise.
NATS_PORT = 4222
#: Programs the docs run that a machine may lack: what to say when one is missing.
OPTIONAL_PROGRAMS = {
    "nats-server": "nats-server is not installed (Debian: apt-get install nats-server; CI installs it)",
}
#: Where a path under /tmp starts in a command line (not /x/tmp/, not /tmp alone).
TMP_PATH = re.compile(r"(?<![\w./~-])/tmp/(?=[\w.-])")
#: What the test publishes at the end of a session, and how a subscriber prints it.
MARKER = {"docs_test": "marker"}
MARKER_PRINTED = '"payload":{"docs_test":"marker"}'
#: ``NAME=value`` or ``NAME=$(command)``, maybe exported, maybe with a comment
#: (not ``NAME=value command``, which sets NAME for that command only).
ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\$\(.*\)|\S*)(\s+#.*)?")


def sse_frames(out: str) -> list[dict]:
    """The frames of an event stream as curl printed it: their fields."""
    frames = []
    for raw in out.replace("\r\n", "\n").split("\n\n"):
        fields = {}
        for line in raw.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        if fields:
            frames.append(fields)
    return frames


def curl_events_prints(out: str) -> Optional[str]:
    """docs/web.md's curl: ``retry: 2000``, then ``stream.ready`` and the two
    events published after it, in the envelope the page shows (later frames,
    from later commands of the reader's session, may follow)."""
    frames = sse_frames(out)
    if not frames or frames[0] != {"retry": "2000"}:
        return "retry: 2000 first"
    events = [f for f in frames[1:] if "event" in f]
    expected = [
        ("stream.ready", {"topology_id": "t1"}, None),
        ("topology.status_changed", {"topology_id": "t1", "status": "active", "previous": "deploying",
                                     "ts": "2026-11-29T16:00:00.123Z"}, "2026-11-29T16:00:00.123Z"),
        ("mutation.applying", {"topology_id": "t1", "mutation_id": "m1", "state": "applying", "op": "add_lan",
                               "error": None}, None),
    ]
    if len(events) < len(expected):
        return f"the frames {', '.join(e[0] for e in expected)}"
    ids = []
    for frame, (name, payload, ts) in zip(events, expected):
        data = json.loads(frame.get("data", "null"))
        if frame["event"] != name or not isinstance(data, dict) or data.get("v") != 1 or data.get("type") != name \
                or data.get("payload") != payload or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                                                        str(data.get("ts"))):
            shown = json.dumps(payload, separators=(",", ":"))
            return f'a frame event: {name} with data {{"v":1,"type":"{name}","ts":...,"payload":{shown}}}'
        if ts is not None and data["ts"] != ts:
            return f"the publisher's ts {ts} in the {name} frame"
        ids.append(int(frame.get("id", "-1")))
    if ids != sorted(set(ids)) or ids[0] < 0:
        return "increasing ids"
    return None


# What a command promises to print: the command line as the docs write it ->
# a check of its stdout that returns None, or what is wrong.
PROMISES: dict[str, Callable[[str], Optional[str]]] = {
    ".venv/bin/python worker.py": lambda out: None
    if "decky.d1.state {'state': 'up'}" in out.splitlines() else "its own event, decky.d1.state {'state': 'up'}",
    ".venv/bin/decnet bus sub '>'": lambda out: None
    if re.search(r'^\{"topic":"decky\.d1\.state","payload":\{"state":"up"\},"time":"[^"]+"\}$', out, re.M)
    else 'a line {"topic":"decky.d1.state","payload":{"state":"up"},"time":"..."}',
    ".venv/bin/decnet bus stats": lambda out: None
    if re.search(r"^published +[1-9]", out, re.M) and re.search(r"^delivered +[1-9]", out, re.M)
    else "the heartbeat as a table, counting the event published before it",
    ".venv/bin/decnet bus sub 'decky.>' --socket /tmp/decnet-fed/b.sock": lambda out: None
    if len(re.findall(r'^\{"topic":"decky\.d1\.state","payload":\{"state":"up"\},"time":"[^"]+"\}$', out, re.M)) == 1
    else 'the event published on host A, once: {"topic":"decky.d1.state","payload":{"state":"up"},"time":"..."}',
    'curl -N -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/v1/topologies/t1/events':
        curl_events_prints,
    ".venv/bin/python -c 'import jwt, os, time; print(jwt.encode({\"sub\": \"me\", \"scope\": \"topology:events\", "
    "\"exp\": int(time.time()) + 8 * 3600}, os.environ[\"DECNET_JWT_SECRET\"], algorithm=\"HS256\"))'": lambda out: None
    if re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", out) else "a token (a JWT) on one line",
}


class Block:
    """One fenced block: where it is, its language and text, and why it is not run (or None)."""

    def __init__(self, doc: Path, line: int, lang: str, text: str, skip: str | None) -> None:
        self.doc, self.line, self.lang, self.text, self.skip = doc, line, lang, text, skip

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> str | None:
        """The file name a python block gives on its first line, if any."""
        m = re.fullmatch(r"# (\w+\.py)", self.text.split("\n", 1)[0].strip())
        return m.group(1) if self.lang == "python" and m else None


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = NOT_RUN.search(before)
            found.append(Block(doc, line, m.group(1), m.group(2), marker.group(1) if marker else None))
    return found


BLOCKS = [b for b in blocks() if b.lang not in NOT_CODE]


def commands(text: str) -> list[str]:
    """The lines of a shell block, continuation lines joined, blank ones left out."""
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def command_only(line: str) -> str:
    """The command without its trailing comment (what PROMISES is keyed by)."""
    return re.sub(r"\s+#.*$", "", line)


def words(line: str) -> list[str]:
    return command_only(line).split()


def options(command: str, *names: str) -> list[str]:
    """The values given to the options ``names`` in ``command`` (``--opt V`` or
    ``--opt=V``), in order, read as bash would split its words."""
    args, values = shlex.split(command, comments=True), []
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in names:
            if equals:
                values.append(value)
            elif i + 1 < len(args):
                values.append(args[i + 1])
    return values


def arguments(command: str, after: int) -> list[str]:
    """The words of ``command`` after the first ``after`` that are not options
    (``decnet bus sub PATTERN``: ``arguments(line, 3)[0]`` is the pattern)."""
    args, found, skip = shlex.split(command, comments=True)[after:], [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = "=" not in arg  # every option of these commands takes a value
        else:
            found.append(arg)
    return found


def runs_until_stopped(line: str) -> bool:
    """A ``decnet bus sub`` that stops only on Ctrl-C."""
    w = words(line)
    return w[1:3] == ["bus", "sub"] and not {"--count", "-n"} & set(w)


def is_decnet(line: str, *command: str) -> bool:
    """``decnet COMMAND...`` (not its --help)."""
    w = words(line)
    return bool(w) and w[0].endswith("decnet") and w[1:1 + len(command)] == list(command) and "--help" not in w


def is_broker(line: str) -> bool:
    """The broker, ``decnet bus [OPTIONS]``."""
    w = words(line)
    return is_decnet(line, "bus") and (len(w) == 2 or w[2].startswith("-"))


def is_nats_server(line: str) -> bool:
    """``nats-server`` serving (not its --help or --version)."""
    w = words(line)
    return bool(w) and os.path.basename(w[0]) == "nats-server" and not {"-h", "--help", "-v", "--version"} & set(w)


def nats_port(line: str) -> int:
    """The port a ``nats-server`` line listens on."""
    return int((options(command_only(line), "-p", "--port") or [NATS_PORT])[-1])


def is_web(line: str) -> bool:
    """``decnet web`` serving (not its --help)."""
    w = words(line)
    return len(w) >= 2 and w[0].endswith("decnet") and w[1] == "web" and "--help" not in w


def is_event_stream(line: str) -> bool:
    """``curl -N`` on the events route: a stream the reader watches until Ctrl-C."""
    w = words(line)
    return bool(w) and w[0] == "curl" and "-N" in w and w[-1].endswith("/events")


def web_address(line: str) -> tuple:
    """Where a ``decnet web`` line listens: ``("uds", path)`` or ``("tcp", host, port)``."""
    w = words(line)

    def option(name: str, default):
        return w[w.index(name) + 1] if name in w else default

    if "--uds" in w:
        return ("uds", option("--uds", None))
    return ("tcp", option("--host", WebConfig().host), int(option("--port", DOCS_PORT)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Background:
    """A command the reader leaves running in another terminal: its process
    (its own process group, as a terminal's job) and its output as it comes."""

    def __init__(self, line: str, command: str, cwd: Path, env: dict, address: Optional[tuple] = None,
                 codes: tuple = (0, 130, -signal.SIGINT)) -> None:
        # line: as the docs write it; address: where it listens; codes: its exits on Ctrl-C
        self.line, self.command, self.address, self.codes = line, command, address, codes
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._out: list[str] = []
        self._err: list[str] = []
        self._open = 2
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list) -> None:
        for line in iter(stream.readline, ""):
            with self._changed:
                into.append(line)
                self._changed.notify_all()
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "".join(self._out) + "".join(self._err)

    def wait_for_output(self, ready: Callable[[str], bool], timeout: float = TIMEOUT) -> bool:
        """True once ``ready(stdout so far)``; False if the output ends or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready("".join(self._out)):
                remaining = deadline - time.monotonic()
                if self._open == 0 or remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def stop(self) -> subprocess.CompletedProcess:
        """Ctrl-C, as the reader stops it: SIGINT to the whole job; its exit and output."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for reader in self._readers:
            reader.join(TIMEOUT)
        return subprocess.CompletedProcess(self.line, self.proc.returncode, "".join(self._out), "".join(self._err))

    def stop_and_check(self, promised: bool = True) -> None:
        check(self.line, self.stop(), self.codes, promised)


@pytest.fixture(scope="module")
def workdir():
    """The directory the blocks run in, with the named python blocks saved in it."""
    path = short_tmpdir("docs-")
    (path / ".venv").symlink_to(sys.prefix)
    for block in BLOCKS:
        if block.file:
            (path / block.file).write_text(block.text)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def docs_broker():
    proc = BrokerProcess(None, "--health-interval", "0.2")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def env(docs_broker):
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("DECNET_BUS_") or k == "DECNET_BUS_NO_EXTENSIONS"}
    for name in ("DECNET_JWT_SECRET", "NOTIFY_SOCKET"):  # only what the docs set
        environ.pop(name, None)
    environ["DECNET_BUS_SOCKET"] = str(docs_broker.path)
    return environ


def check(what: str, result: subprocess.CompletedProcess, codes=(0,), promised: bool = True) -> None:
    """``what`` exited with one of ``codes``, with no traceback, and printed
    what PROMISES says (unless not ``promised``)."""
    assert result.returncode in codes, f"{what}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"{what}:\n{result.stderr}"
    promise = PROMISES.get(command_only(what)) if promised else None
    if promise is not None:
        wrong = promise(result.stdout)
        assert wrong is None, f"{what} should print {wrong}; it printed:\n{result.stdout}{result.stderr}"


def wait_ready(proc: Background, notify: socket.socket) -> Optional[str]:
    """None once ``proc`` said READY=1 on ``notify``, else what went wrong."""
    deadline = time.monotonic() + TIMEOUT
    notify.settimeout(0.1)  # to notice an early exit
    while proc.proc.poll() is None:
        if time.monotonic() > deadline:
            return f"no READY=1 within {TIMEOUT} s"
        try:
            if "READY=1" in notify.recv(4096).decode().split("\n"):
                return None
        except socket.timeout:
            continue
    return "exited before READY=1"


def launch_notified(line: str, command: str, cwd: Path, env: dict, address: Optional[tuple] = None) -> Background:
    """Start ``command`` (a decnet server: it exits 0 on Ctrl-C) with a
    ``NOTIFY_SOCKET`` of its own; return it once it said READY=1 and, given
    its ``address``, a connection to that succeeds. Else stop it and raise."""
    notify_dir = short_tmpdir("docs-notify-")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        notify.bind(str(notify_dir / "notify"))
        proc = Background(line, command, cwd, {**env, "NOTIFY_SOCKET": str(notify_dir / "notify")}, address, codes=(0,))
        problem = wait_ready(proc, notify)
    finally:
        notify.close()
        shutil.rmtree(notify_dir, ignore_errors=True)
    if problem is None and address is not None:
        family, *where = address
        with socket.socket(socket.AF_UNIX if family == "uds" else socket.AF_INET) as probe:
            probe.settimeout(TIMEOUT)
            try:
                probe.connect(where[0] if family == "uds" else tuple(where))
            except OSError as error:
                problem = f"READY=1, but {address} refuses a connection: {error}"
    if problem is not None:
        result = proc.stop()
        raise AssertionError(f"{line}: {problem} (exit {result.returncode})\n{result.stdout}{result.stderr}")
    return proc


async def start_subscriber(line: str, command: str, broker: str, workdir: Path, env: dict) -> Background:
    """Start ``command`` (a ``decnet bus sub``) and return once ``broker`` has
    its subscription: the broker's heartbeat counts one more connection and
    one more subscription than the first heartbeat the test's client gets,
    which counts that client, what runs in the background, and no command
    that exited before it connected."""
    async with UnixBus(broker, name="tests/test_docs.py") as bus:
        async with bus.subscribe(SYSTEM_BUS_HEALTH) as health:

            async def heartbeat(expected: Optional[tuple] = None) -> tuple:
                async for evt in health:
                    if not evt.gap:
                        counts = (evt.payload["connections"], evt.payload["subscriptions"])
                        if expected is None or counts == expected:
                            return counts
                raise AssertionError(f"{broker}: the heartbeats ended")

            connections, subscriptions = await asyncio.wait_for(heartbeat(), TIMEOUT)
            sub = Background(line, command, workdir, env, codes=(0, 130))
            try:
                await asyncio.wait_for(heartbeat((connections + 1, subscriptions + 1)), TIMEOUT)
            except asyncio.TimeoutError:
                result = sub.stop()
                raise AssertionError(f"{line}: not subscribed within {TIMEOUT} s: {result}") from None
            return sub


async def start_connected_bridge(line: str, command: str, broker: str, name: str, workdir: Path,
                                 env: dict) -> Background:
    """Start ``command`` (a ``decnet bus bridge`` named ``name`` on ``broker``)
    and return once it said READY=1 and is connected both ways: its first gap
    notice (``connect``: its NATS subscriptions are live) or a heartbeat
    saying ``live``, which the test's client on ``broker`` waits for."""
    gap, health = gap_topic(name), health_topic(name)
    async with UnixBus(broker, name="tests/test_docs.py") as bus:
        async with bus.subscribe(gap, health) as notices:
            await bus.flush(TIMEOUT)  # the broker has the subscription before the bridge may publish
            bridge = await asyncio.to_thread(launch_notified, line, command, workdir, env)

            async def connected() -> None:
                async for evt in notices:
                    if not evt.gap and (evt.topic == gap and evt.payload.get("reason") == "connect"
                                        or evt.topic == health and evt.payload.get("live")):
                        return

            try:
                await asyncio.wait_for(connected(), TIMEOUT)
            except asyncio.TimeoutError:
                result = bridge.stop()
                raise AssertionError(f"{line}: READY=1, but not connected to NATS both ways within {TIMEOUT} s "
                                     f"(exit {result.returncode})\n{result.stdout}{result.stderr}") from None
            return bridge


async def publish_marker(broker: str, topic: str) -> None:
    async with UnixBus(broker, name="tests/test_docs.py") as bus:
        await bus.publish(topic, MARKER)
        await bus.flush(TIMEOUT)


class Session:
    """One reader going through one document's shell blocks: the variables
    assigned so far, and what runs in the background until the end."""

    def __init__(self, doc: Path, workdir: Path, env: dict) -> None:
        self.doc, self.workdir, self.base_env = doc, workdir, env
        self.variables: dict[str, str] = {}
        self.background: list[Background] = []
        self.ran: set[int] = set()
        self.failed = False  # a command failed: the end of the session checks no marker
        self.shell_blocks = [b for b in BLOCKS if b.doc == doc and b.lang in SHELL and not b.skip]
        lines = [(b, command_only(line)) for b in self.shell_blocks for line in commands(b.text)]
        #: The docs' ports -> the free ones used here.
        self.ports: dict[int, int] = {}
        wanted = ([DOCS_PORT] if any(is_web(line) for _, line in lines) else []) + [
            nats_port(line) for _, line in lines if is_nats_server(line)]
        for port in wanted:
            while port not in self.ports:
                free = free_port()
                if free not in self.ports.values():
                    self.ports[port] = free
        self.tmp = short_tmpdir("docs-tmp-") if any(TMP_PATH.search(line) for _, line in lines) else None
        #: The ports of the nats-servers running in this session.
        self.nats_ports: set[int] = set()
        #: (broker, topic) of the last ``decnet bus pub``, which the marker follows.
        self.last_pub: Optional[tuple[str, str]] = None
        #: The first block that needs a program missing here, and what to say.
        self.missing: Optional[tuple[int, str]] = None
        for block, line in lines:
            program = words(line)[0]
            if os.path.basename(program) in OPTIONAL_PROGRAMS and shutil.which(program) is None:
                self.missing = (block.line, OPTIONAL_PROGRAMS[os.path.basename(program)])
                break

    def env(self) -> dict:
        return {**self.base_env, **self.variables}

    def command(self, line: str) -> str:
        """``line`` as it runs here: on this session's ports and directory instead of the docs' ones."""
        for port, free in self.ports.items():
            line = re.sub(rf"\b{port}\b", str(free), line)
        if self.tmp is not None:
            line = TMP_PATH.sub(f"{self.tmp}/", line)
        if is_web(line) and not {"--port", "--uds"} & set(words(line)):
            line = re.sub(r"(\S*decnet web)\b", rf"\1 --port {self.ports[DOCS_PORT]}", line, count=1)
        return line

    def broker(self, command: str) -> str:
        """The broker a decnet client ``command`` talks to."""
        return (options(command, "--socket") or [self.env()["DECNET_BUS_SOCKET"]])[-1]

    def run(self, block: Block) -> None:
        """Run ``block`` after the document's earlier shell blocks not run yet;
        end the session after the document's last one. Skip it if it, or an
        earlier block, runs a program this machine lacks."""
        if self.missing is not None and block.line >= self.missing[0]:
            pytest.skip(f"{block.where}: {self.missing[1]}")
        try:
            for earlier in self.shell_blocks:
                if earlier.line >= block.line:
                    break
                if earlier.line not in self.ran:
                    self._run(earlier)
            self._run(block)
        except BaseException:
            self.failed = True
            raise
        if block is self.shell_blocks[-1]:
            self.close()

    def _run(self, block: Block) -> None:
        self.ran.add(block.line)
        for line in commands(block.text):
            written = command_only(line)
            ampersand = written.endswith("&") and not written.endswith("&&")  # the reader's own background job
            bare = written[:-1].rstrip() if ampersand else written
            command = self.command(bare)
            if runs_until_stopped(bare):
                self.background.append(asyncio.run(
                    start_subscriber(line, command, self.broker(command), self.workdir, self.env())))
            elif is_web(bare):
                self._start_server(line, command, web_address(command))
            elif is_broker(bare):
                self._start_server(line, command, ("uds", self.broker(command)))
            elif is_decnet(bare, "bus", "bridge"):
                self._start_bridge(line, command)
            elif is_nats_server(bare):
                self._start_nats(line, command)
            elif is_event_stream(bare):
                self._start_stream(line, command)
            elif ampersand:
                raise AssertionError(f"{block.where}: {line}: in the background, but this test knows no readiness "
                                     f"for it (see its docstring)")
            elif assignment := ASSIGNMENT.fullmatch(line):
                self._assign(line, assignment.group(1), re.sub(r"^export\s+", "", line))
            else:
                check(line, subprocess.run(["bash", "-c", command], cwd=self.workdir, env=self.env(),
                                           capture_output=True, text=True, timeout=TIMEOUT))
                if is_decnet(bare, "bus", "pub"):
                    self.last_pub = (self.broker(command), arguments(command, 3)[0])

    def _assign(self, line: str, name: str, assignment: str) -> None:
        # Without "export", the status is the command substitution's.
        script = f"{self.command(assignment)}\nstatus=$?\nprintf '%s' \"${name}\"\nexit $status"
        result = subprocess.run(["bash", "-c", script], cwd=self.workdir, env=self.env(), capture_output=True,
                                text=True, timeout=TIMEOUT)
        check(line, result)
        self.variables[name] = result.stdout

    def _start_server(self, line: str, command: str, address: tuple) -> None:
        """``decnet web`` or a broker: at READY=1, in place of what served ``address``."""
        for i, earlier in enumerate(self.background):
            if earlier.address == address:  # the reader stops it, and what came after it, to start again
                self._stop(self.background[i:])
                break
        self.background.append(launch_notified(line, command, self.workdir, self.env(), address))

    def _start_bridge(self, line: str, command: str) -> None:
        """At READY=1; connected both ways if its NATS is one this session runs."""
        ours = any(urlsplit(url if "://" in url else f"nats://{url}").port in self.nats_ports
                   for given in options(command, "--nats") for url in given.split(","))
        if not ours:
            self.background.append(launch_notified(line, command, self.workdir, self.env()))
            return
        name = (options(command, "--name") or [default_name()])[-1]
        self.background.append(asyncio.run(
            start_connected_bridge(line, command, self.broker(command), name, self.workdir, self.env())))

    def _start_nats(self, line: str, command: str) -> None:
        """Once its port accepts a connection and the server sends its INFO."""
        port = nats_port(command)
        host = (options(command, "-a", "--addr", "--net") or ["127.0.0.1"])[-1]
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        server = Background(line, command, self.workdir, self.env())
        deadline = time.monotonic() + TIMEOUT
        while True:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                result = server.stop()
                raise AssertionError(f"{line}: no NATS server on {host}:{port} within {TIMEOUT} s (exit "
                                     f"{result.returncode})\n{result.stdout}{result.stderr}")
            try:
                with socket.create_connection((host, port), timeout=1.0) as probe:
                    if probe.recv(5) == b"INFO ":
                        break
            except OSError:
                pass
            time.sleep(0.02)  # polling a port another process opens: there is nothing to wait on
        self.nats_ports.add(port)
        self.background.append(server)

    def _start_stream(self, line: str, command: str) -> None:
        stream = Background(line, command, self.workdir, self.env())
        ready = re.compile(r"^event: stream\.ready\ndata: .*\n\n", re.M)
        if not stream.wait_for_output(lambda out: bool(ready.search(out))):
            result = stream.stop()
            raise AssertionError(f"{line}: no stream.ready frame (its output ended, or {TIMEOUT} s passed; exit "
                                 f"{result.returncode})\n"
                                 f"{result.stdout}{result.stderr}")
        self.background.append(stream)

    def _marker(self) -> None:
        """Publish the marker where the last ``decnet bus pub`` published, and
        wait until each running ``decnet bus sub`` it matches printed it."""
        if self.last_pub is None:
            return
        broker, topic = self.last_pub
        subs = [b for b in self.background if runs_until_stopped(b.line) and b.proc.poll() is None
                and matches(arguments(b.command, 3)[0], topic)]
        if not subs:
            return
        asyncio.run(publish_marker(broker, topic))
        late = [b.line for b in subs if not b.wait_for_output(lambda out: MARKER_PRINTED in out)]
        assert not late, f"the marker published on {topic} after the last pub did not reach {late} in {TIMEOUT} s"

    def _stop(self, which: list[Background], promised: bool = True) -> None:
        """Ctrl-C to each, latest first, and check it (what it printed too
        if ``promised``); every one is stopped before a failed check is raised."""
        failures = []
        for proc in reversed(which):
            self.background.remove(proc)
            try:
                proc.stop_and_check(promised)
            except AssertionError as error:
                failures.append(str(error))
        assert not failures, "\n\n".join(failures)

    def close(self) -> None:
        """The end of the reader's session (or of the blocks run of it): the
        marker unless a command failed, then everything still running gets
        Ctrl-C, its promise checked if the session ran to its last block;
        the private directory goes."""
        try:
            if not self.failed:
                self._marker()
        finally:
            try:
                # What a background command promises may need the rest of the document.
                self._stop(list(self.background), promised=self.shell_blocks[-1].line in self.ran and not self.failed)
            finally:
                if self.tmp is not None:
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    self.tmp = None


@pytest.fixture(scope="module")
def sessions(workdir, env):
    """The reader's session of each document, made on first use."""
    made: dict[Path, Session] = {}

    def session(doc: Path) -> Session:
        if doc not in made:
            made[doc] = Session(doc, workdir, env)
        return made[doc]

    yield session
    failures = []
    for s in made.values():  # a document not run to its end (a failure, or -k)
        try:
            s.close()
        except Exception as error:
            failures.append(f"{s.doc.name}: {error}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_block_runs_as_written(block, workdir, env, sessions):
    if block.skip:
        pytest.skip(f"{block.where}: not run: {block.skip}")
    if block.lang == "python":
        if block.file:
            runners = [b for b in BLOCKS if b.lang in SHELL and not b.skip
                       and any(block.file in command_only(line).split() for line in commands(b.text))]
            assert runners, f"{block.where}: no shell block runs {block.file}"
            return  # saved in workdir; the shell block that runs it is the test
        script = workdir / f"block_{block.line}.py"
        script.write_text(block.text)
        check(block.where, subprocess.run([sys.executable, script.name], cwd=workdir, env=env, capture_output=True,
                                          text=True, timeout=TIMEOUT))
    elif block.lang == "pycon":
        session = workdir / f"session_{block.line}.txt"
        session.write_text(block.text)
        check(block.where, subprocess.run([sys.executable, "-m", "doctest", session.name], cwd=workdir, env=env,
                                          capture_output=True, text=True, timeout=TIMEOUT))
    elif block.lang in SHELL:
        sessions(block.doc).run(block)
    else:
        pytest.fail(f"{block.where}: a ```{block.lang} block: use python, pycon, sh or text (see this test's docstring)")


def test_every_promise_is_made_by_some_doc():
    """PROMISES names only commands the docs still contain."""
    lines = {command_only(line) for b in BLOCKS if b.lang in SHELL for line in commands(b.text)}
    assert set(PROMISES) <= lines, set(PROMISES) - lines
