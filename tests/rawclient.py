"""A blocking raw-socket client that speaks the wire protocol byte for byte."""

from __future__ import annotations

import socket
import time

import orjson

from decnet.bus import constants as C
from decnet.bus._purematch import FrameDecoder, encode


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

    def count_events(self, want: int) -> int:
        """Read until ``want`` EVTs came (or EOF); how many came."""
        n = 0
        while n < want:
            frame = self.frame()
            if frame is None:
                break
            n += frame[0] == "EVT"
        return n

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
