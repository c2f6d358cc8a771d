"""Real broker processes for end-to-end tests: start on a temp socket, wait for
READY=1 from the broker itself (sd_notify on a socket the test owns), and always
tear down (terminate, wait, kill)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_TIMEOUT = 20.0


class BrokerProcess:
    def __init__(self, path: Path, *args: str, loop: str = "uvloop", env: dict | None = None) -> None:
        self.path = Path(path)
        self.args = args
        self.loop = loop
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        # Log and notify socket live apart from the socket's directory, which
        # a test may want the broker to create.
        self.workdir = short_tmpdir()
        self.log = self.workdir / "broker.log"
        self._output: str | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "decnet", "bus", "--socket", str(self.path), "--loop", self.loop, "--group", "nogroup-decnet-test", *self.args]

    def start(self, wait: bool = True, keep_notify: bool = False, **popen) -> "BrokerProcess":
        """Start and wait for READY=1; ``keep_notify`` leaves ``self.notify`` open for later messages."""
        notify_path = self.workdir / f"notify-{time.monotonic_ns()}"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            self.messages = wait_ready(notify, self.proc, self.log) if wait else []
        finally:
            if keep_notify:  # the broker keeps sending to it: it stays until stop()
                self.notify = notify
            else:
                notify.close()
                notify_path.unlink()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Stop the broker; its exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._output is None and sig != signal.SIGKILL:
            self._output = self.log.read_text(errors="replace")
            shutil.rmtree(self.workdir, ignore_errors=True)
        return proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        return self._output if self._output is not None else self.log.read_text(errors="replace")

    def __enter__(self) -> "BrokerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_ready(notify: socket.socket, proc: subprocess.Popen, log: Path) -> list[str]:
    """Messages received on NOTIFY_SOCKET up to READY=1."""
    messages = []
    deadline = time.monotonic() + READY_TIMEOUT
    notify.settimeout(0.1)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited with {proc.returncode} before READY=1:\n{log.read_text(errors='replace')}")
        try:
            message = notify.recv(4096).decode()
        except socket.timeout:
            continue
        messages.append(message)
        if "READY=1" in message.split("\n"):
            return messages
    proc.kill()
    raise AssertionError(f"no READY=1 within {READY_TIMEOUT} s:\n{log.read_text(errors='replace')}")


def short_tmpdir() -> Path:
    """A private directory with a short path: sun_path holds 107 bytes at most."""
    return Path(tempfile.mkdtemp(prefix="dbus-", dir="/tmp"))
