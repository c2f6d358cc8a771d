"""A blocking raw-socket client that speaks the wire protocol byte for byte,
and ``Follower``, which counts what one of them receives on a thread.

Frames are encoded and decoded by the pure-Python twin whatever hot path the
broker runs, so a compiled codec is never checked against itself.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Optional

import orjson

from .. import constants as C
from .._compat import implementations

_pure = implementations()["pure"]
encode = _pure.encode


class Raw:
    """One connection to the broker at ``path``; says HELLO first unless
    ``hello`` is false (the broker's reply is in ``server``). Every read
    times out after ``timeout`` s, so a broker that stops answering fails the
    caller instead of hanging it."""

    def __init__(self, path: os.PathLike, hello: bool = True, name: str = "raw", echo: Optional[bool] = None,
                 timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.decoder = _pure.FrameDecoder(C.MAX_LEN_FIELD)
        self.pending: list = []
        self.raw_bytes = b""  # the first 64 KiB or so received, as they came
        self.server: Optional[dict] = None
        self.watching = False  # subscribed to the heartbeat
        if hello:
            body = {"v": 1, "name": name, "pid": os.getpid()}
            if echo is not None:
                body["echo"] = echo
            self.send(encode("HELLO", None, orjson.dumps(body)))
            frame = self.frame()
            if frame is None or frame[0] != "HELLO":
                raise AssertionError(f"the broker answered HELLO with {frame}")
            self.server = orjson.loads(frame[2])

    def send(self, *frames: bytes) -> None:
        """Write the frames in one go."""
        self.sock.sendall(b"".join(frames))

    def pub(self, topic: str, payload) -> None:
        """PUB ``payload`` as JSON."""
        self.send(encode("PUB", topic, orjson.dumps(payload)))

    def frame(self) -> Optional[tuple]:
        """The next frame ``(verb, topic, body)``, or None at EOF."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.raw_bytes += data if len(self.raw_bytes) < 65536 else b""
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def until_pong(self) -> list:
        """Send PING; every frame received before the PONG. The broker answers
        in order, so everything sent before has been handled."""
        self.send(encode("PING"))
        frames = []
        while True:
            frame = self.frame()
            if frame is None:
                raise ConnectionError("the broker closed the connection before PONG")
            if frame[0] == "PONG":
                return frames
            frames.append(frame)

    def heartbeat(self, want: Callable[[dict], bool] = lambda health: True, timeout: float = 20.0) -> dict:
        """The next system.bus.health heartbeat that satisfies ``want``
        (subscribes to it on first use; other frames are skipped)."""
        if not self.watching:
            self.send(encode("SUB", "system.bus.health"))
            self.watching = True
        deadline, health = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            frame = self.frame()
            if frame is None:
                raise ConnectionError("the broker closed the connection")
            if frame[0] == "EVT" and frame[1] == "system.bus.health":
                health = orjson.loads(frame[2])
                if want(health):
                    return health
        raise AssertionError(f"no heartbeat as wanted within {timeout} s (last: {health})")

    def error(self) -> dict:
        """The body of the next frame, which must be an ERR."""
        frame = self.frame()
        if frame is None or frame[0] != "ERR":
            raise AssertionError(f"expected ERR, got {frame}")
        return orjson.loads(frame[2])

    def closed(self) -> bool:
        """True once the broker closed the connection (frames before EOF are skipped)."""
        while True:
            try:
                if self.frame() is None:
                    return True
            except ConnectionResetError:
                return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Follower:
    """Counts the EVTs a healthy ``Raw`` subscriber receives, on a thread.

    A publisher calls ``keep_within(sent, window)`` before each send: a reader
    that keeps up is never held, and one starved of CPU on a loaded machine
    (another process, or this one's publishing thread holding the GIL) never
    falls so far behind that its own queue overflows. What such a test shows
    is what the broker does with a reader that does not keep up, beside one
    that does; whether a test thread gets the CPU in time is not its subject.
    """

    def __init__(self, raw: Raw, want: int) -> None:
        self.raw, self.want = raw, want
        self.count = 0
        self.done = False
        self.error: Optional[BaseException] = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while self.count < self.want:
                frame = self.raw.frame()
                if frame is None:
                    break
                if frame[0] == "EVT":
                    with self.changed:
                        self.count += 1
                        self.changed.notify_all()
        except BaseException as error:  # handed to result()
            self.error = error
        finally:
            with self.changed:
                self.done = True
                self.changed.notify_all()

    def keep_within(self, sent: int, window: int, timeout: float = 60.0) -> None:
        """Wait until the reader is at most ``window`` events behind ``sent``."""
        with self.changed:
            self.changed.wait_for(lambda: self.done or sent - self.count <= window, timeout)
        if sent - self.count > window and not self.done:
            raise AssertionError(f"the reader stayed {sent - self.count} events behind for {timeout} s")

    def result(self, timeout: float = 120.0) -> int:
        """How many EVTs it received, once it has them all (or the stream ended)."""
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        if self.thread.is_alive():
            raise AssertionError(f"the reader is still waiting after {timeout} s ({self.count} of {self.want})")
        return self.count
