"""A blocking raw-socket client that speaks the wire protocol byte for byte."""

from __future__ import annotations

import socket
import threading
import time

import orjson

from decnet.bus import constants as C
from decnet.bus._pure import FrameDecoder, encode


class Raw:
    def __init__(self, path, hello: bool = True, name: str = "raw", echo: bool | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.decoder = FrameDecoder(C.MAX_LEN_FIELD)
        self.pending: list = []
        self.raw_bytes = b""
        self.server = None
        self.watching = False  # subscribed to the heartbeat
        if hello:
            body = {"v": 1, "name": name, "pid": 0}
            if echo is not None:
                body["echo"] = echo
            self.send(encode("HELLO", None, orjson.dumps(body)))
            verb, _, reply = self.frame()
            assert verb == "HELLO", verb
            self.server = orjson.loads(reply)

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def pub(self, topic: str, payload) -> None:
        self.send(encode("PUB", topic, orjson.dumps(payload)))

    def frame(self):
        """The next frame, or None at EOF."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.raw_bytes += data if len(self.raw_bytes) < 65536 else b""
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def until_pong(self) -> list:
        """Send PING; every frame received before the PONG."""
        self.send(encode("PING"))
        frames = []
        while True:
            frame = self.frame()
            assert frame is not None, "connection closed before PONG"
            if frame[0] == "PONG":
                return frames
            frames.append(frame)

    def heartbeat(self, want=lambda health: True, timeout: float = 20.0) -> dict:
        """The next system.bus.health heartbeat that satisfies ``want``
        (subscribes to it on first use; other frames are skipped)."""
        if not self.watching:
            self.send(encode("SUB", "system.bus.health"))
            self.watching = True
        deadline, health = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            frame = self.frame()
            assert frame is not None, "the broker closed the connection"
            if frame[0] == "EVT" and frame[1] == "system.bus.health":
                health = orjson.loads(frame[2])
                if want(health):
                    return health
        raise AssertionError(f"no heartbeat as wanted within {timeout} s (last: {health})")

    def error(self) -> dict:
        frame = self.frame()
        assert frame is not None and frame[0] == "ERR", frame
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
        self.error: BaseException | None = None
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
        assert sent - self.count <= window or self.done, f"the reader stayed {sent - self.count} events behind for {timeout} s"

    def result(self, timeout: float = 120.0) -> int:
        """How many EVTs it received, once it has them all (or the stream ended)."""
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self.thread.is_alive(), f"the reader is still waiting after {timeout} s ({self.count} of {self.want})"
        return self.count
