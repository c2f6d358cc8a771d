"""A broker subprocess for the standalone benchmarks, and reading its CPU and memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from decnet.bus._pure import FrameDecoder, encode


class Broker:
    """``decnet bus`` on a temp socket; ``pure`` runs it with DECNET_BUS_NO_EXTENSIONS=1,
    ``unbatched`` without batching (bench/unbatched_broker.py)."""

    def __init__(self, *args: str, loop: str = "uvloop", pure: bool = False, unbatched: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dbench-", dir="/tmp"))
        self.path = self.dir / "bus.sock"
        env = {**os.environ}
        env.pop("DECNET_BUS_NO_EXTENSIONS", None)
        if pure:
            env["DECNET_BUS_NO_EXTENSIONS"] = "1"
        # unbatched: the same broker writing each delivery on its own (bench/unbatched_broker.py)
        entry = [str(Path(__file__).with_name("unbatched_broker.py"))] if unbatched else ["-m", "decnet"]
        cmd = [sys.executable, *entry, "bus", "--socket", str(self.path), "--loop", loop,
               "--group", "root", "--log-level", "warning", *args]
        self.proc = subprocess.Popen(cmd, env=env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                hello(self.path).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("broker did not come up")

    def cpu(self) -> float:
        """User+system CPU seconds used so far."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def syscalls(self) -> tuple[int, int]:
        """Read-like and write-like system calls made so far (/proc/PID/io syscr, syscw)."""
        fields = dict(line.split(": ") for line in open(f"/proc/{self.proc.pid}/io").read().splitlines())
        return int(fields["syscr"]), int(fields["syscw"])

    def rss(self) -> int:
        """Resident set size in bytes."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def hello(path, name: str = "bench") -> socket.socket:
    """A raw connection that has said HELLO (the reply is read)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)  # a broker that accepts and never answers fails the run, not hangs it
    sock.connect(str(path))
    sock.sendall(encode("HELLO", None, orjson.dumps({"v": 1, "name": name, "pid": os.getpid()})))
    decoder = FrameDecoder(1 << 20)
    while True:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("broker closed the connection")
        if any(frame[0] == "HELLO" for frame in decoder.feed(data)):
            return sock


def until_pong(sock: socket.socket) -> None:
    sock.sendall(encode("PING"))
    decoder = FrameDecoder(1 << 30)
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("broker closed the connection")
        if any(frame[0] == "PONG" for frame in decoder.feed(data)):
            return
