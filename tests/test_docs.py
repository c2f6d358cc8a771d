"""Every code block of README.md and docs/*.md runs as written, against a real
broker, and prints what the text around it promises.

A block is treated by its fence's language:

- ``python``: a program. If its first line names a file (``# worker.py``) it
  is saved under that name for the shell block that runs it (which must
  exist); otherwise it is run on its own with this virtualenv's python.
- ``pycon``: an interactive session, checked by ``python -m doctest``: every
  output must be the one shown.
- ``sh``: each line (``\\``-continued lines joined) runs with bash, one after
  the other. A ``decnet bus sub`` without ``--count`` runs until Ctrl-C (the
  docs run it "in another terminal"): it is started in the background, the
  next line runs once the broker's heartbeat counts its subscription, and it
  gets SIGINT when the block is done.
- ``text`` or no language: output or a diagram, not code. Any other language
  fails the test, so that no block escapes it by accident.

Everything runs in one temporary directory, where ``.venv`` points at the
virtualenv running the tests (so ``.venv/bin/decnet`` is this install, also in
CI's pure-Python run, which has no ``.venv``), with ``DECNET_BUS_SOCKET`` set
to a broker that ``BrokerProcess`` started for this module. Each command must
exit 0 (a ``sub`` stopped by Ctrl-C: 0 or 130) with no traceback; what a
command promises to print is in ``PROMISES`` below.

A block that must not run here carries, on the line right above its fence,

    <!-- not run: REASON -->

which a rendered page does not show. The test reports it as skipped with
REASON (``pytest -ra`` lists them). What is not run, and why: the ``make``
targets (they install into ``.venv`` and run for minutes), installs (``pip
install``, the system-wide steps of docs/deploy.md, which also need root and
systemd), ``systemd-analyze verify`` on the units (tests/test_deploy.py runs
it, on copies pointed at this install), the benchmark commands (minutes, and
peers that bench/peers.sh installs) and the long reliability runs.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from decnet.bus import UnixBus
from decnet.bus.testing import BrokerProcess, short_tmpdir
from decnet.bus.topics import SYSTEM_BUS_HEALTH

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
SHELL = {"sh", "bash", "shell"}
NOT_CODE = {"", "text"}
TIMEOUT = 30.0

# What a command promises to print: the command line as the docs write it ->
# a check of its stdout that returns None, or what is wrong.
PROMISES = {
    ".venv/bin/python worker.py": lambda out: None
    if "decky.d1.state {'state': 'up'}" in out.splitlines() else "its own event, decky.d1.state {'state': 'up'}",
    ".venv/bin/decnet bus sub '>'": lambda out: None
    if re.search(r'^\{"topic":"decky\.d1\.state","payload":\{"state":"up"\},"time":"[^"]+"\}$', out, re.M)
    else 'a line {"topic":"decky.d1.state","payload":{"state":"up"},"time":"..."}',
    ".venv/bin/decnet bus stats": lambda out: None
    if re.search(r"^published +[1-9]", out, re.M) and re.search(r"^delivered +[1-9]", out, re.M)
    else "the heartbeat as a table, counting the event published before it",
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


def runs_until_stopped(line: str) -> bool:
    words = command_only(line).split()
    return words[1:3] == ["bus", "sub"] and not {"--count", "-n"} & set(words)


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
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DECNET_BUS_") or k == "DECNET_BUS_NO_EXTENSIONS"}
    environ["DECNET_BUS_SOCKET"] = str(docs_broker.path)
    return environ


def check(what: str, result: subprocess.CompletedProcess, codes=(0,)) -> None:
    assert result.returncode in codes, f"{what}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"{what}:\n{result.stderr}"
    promise = PROMISES.get(command_only(what))
    if promise is not None:
        wrong = promise(result.stdout)
        assert wrong is None, f"{what} should print {wrong}; it printed:\n{result.stdout}{result.stderr}"


async def start_subscriber(line: str, workdir: Path, env: dict) -> subprocess.Popen:
    """Start ``line`` (a ``decnet bus sub``) and return once the broker has its
    subscription: this client alone is connected, then the heartbeat counts one
    more connection and one more subscription. Earlier commands have exited, but
    the broker may not have seen it yet: the first wait covers that."""
    async with UnixBus(env["DECNET_BUS_SOCKET"], name="tests/test_docs.py") as bus:
        async with bus.subscribe(SYSTEM_BUS_HEALTH) as health:

            async def heartbeat(connections: int, subscriptions: int) -> None:
                async for evt in health:
                    if not evt.gap and (evt.payload["connections"], evt.payload["subscriptions"]) == (
                            connections, subscriptions):
                        return

            await asyncio.wait_for(heartbeat(1, 1), TIMEOUT)
            proc = subprocess.Popen(["bash", "-c", line], cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
            try:
                await asyncio.wait_for(heartbeat(2, 2), TIMEOUT)
            except asyncio.TimeoutError:
                stop(proc)
                raise AssertionError(f"{line}: not subscribed within {TIMEOUT} s: {proc.communicate()}") from None
            return proc


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C, as the reader stops it: SIGINT to the whole job (bash and decnet); its output."""
    os.killpg(proc.pid, signal.SIGINT)
    return proc.communicate(timeout=TIMEOUT)


def run_shell(block: Block, workdir: Path, env: dict) -> None:
    background = []
    try:
        for line in commands(block.text):
            if runs_until_stopped(line):
                background.append((line, asyncio.run(start_subscriber(line, workdir, env))))
                continue
            result = subprocess.run(["bash", "-c", line], cwd=workdir, env=env, capture_output=True, text=True,
                                    timeout=TIMEOUT)
            check(line, result)
    finally:
        for line, proc in background:
            out, err = stop(proc)
            check(line, subprocess.CompletedProcess(line, proc.returncode, out, err), codes=(0, 130))


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_block_runs_as_written(block, workdir, env):
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
        run_shell(block, workdir, env)
    else:
        pytest.fail(f"{block.where}: a ```{block.lang} block: use python, pycon, sh or text (see this test's docstring)")


def test_every_promise_is_made_by_some_doc():
    """PROMISES names only commands the docs still contain."""
    lines = {command_only(line) for b in BLOCKS if b.lang in SHELL for line in commands(b.text)}
    assert set(PROMISES) <= lines, set(PROMISES) - lines
