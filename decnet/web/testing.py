"""For tests and benchmarks of ``decnet web``: the app as a child process
(``WebProcess``, ready on systemd's READY=1), a token maker, and a minimal
SSE client over a raw socket (``SSEClient``) that reads an endless stream
frame by frame, which httpx's ASGI transport cannot.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Optional

import jwt

from decnet.bus.testing.process import NotifyProcess

from .auth import EVENTS_SCOPE

#: A secret good enough for tests (never use a fixed secret elsewhere).
TEST_SECRET = "decnet-web-tests-" + "0123456789abcdefghijklmnopqrstuvwxyz"


def make_token(secret: str = TEST_SECRET, *, sub: Optional[str] = "tester", scope: Optional[str] = EVENTS_SCOPE,
               ttl: float = 3600.0, algorithm: str = "HS256", **claims) -> str:
    """A JWT for the API; leave a claim out by passing None."""
    body = {"exp": int(time.time() + ttl), **claims}
    if sub is not None:
        body["sub"] = sub
    if scope is not None:
        body["scope"] = scope
    return jwt.encode(body, secret, algorithm=algorithm)


class WebProcess(NotifyProcess):
    """``decnet web`` as a child process on a UNIX socket, with the bus of
    ``bus_socket``; ``args`` go to the command line, ``env`` to its environment."""

    log_name = "web.log"

    def __init__(self, bus_socket: os.PathLike, *args: str, env: Optional[dict] = None,
                 secret: str = TEST_SECRET) -> None:
        super().__init__({"DECNET_JWT_SECRET": secret, "DECNET_BUS_SOCKET": str(bus_socket), **(env or {})},
                         prefix="dweb-")
        self.path = self.workdir / "web.sock"
        self.bus_socket = Path(bus_socket)
        self.args = args

    def command(self) -> list[str]:
        return [sys.executable, "-m", "decnet", "web", "--uds", str(self.path), *self.args]


class Frame(dict):
    """One SSE frame: its fields (``id``, ``event``, ``data``, ``retry``) and
    ``comment`` for a comment line."""


class SSEClient:
    """One HTTP/1.1 request over a raw UNIX socket, its response head, and the
    body read as SSE frames (chunked transfer decoded)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self._buffer = b""
        self._chunked = False
        self._ended = False
        #: The server closed the connection in the middle of the response.
        self.cut = False

    @classmethod
    async def open(cls, path: os.PathLike, target: str, headers: Optional[dict] = None) -> "SSEClient":
        reader, writer = await asyncio.open_unix_connection(str(path))
        client = cls(reader, writer)
        lines = [f"GET {target} HTTP/1.1", "Host: localhost", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await client._head()
        return client

    async def _head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def body(self) -> bytes:
        """The whole body of a finite response."""
        if "content-length" in self.headers:
            return await self.reader.readexactly(int(self.headers["content-length"]))
        data = b""
        while await self._more():
            data, self._buffer = data + self._buffer, b""
        return data + self._buffer

    async def _more(self) -> bool:
        """Read the next piece of body into the buffer; False at its end."""
        if self._ended:
            return False
        if not self._chunked:
            data = await self.reader.read(65536)
            self._buffer += data
            self._ended = not data
            return bool(data)
        try:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            data = await self.reader.readexactly(size + 2)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            self._ended = self.cut = True  # closed without the end of the response
            return False
        if size == 0:
            self._ended = True
            return False
        self._buffer += data[:-2]
        return True

    async def frame(self) -> Optional[Frame]:
        """The next frame (blank-line separated), or None at the end of the stream."""
        while b"\n\n" not in self._buffer:
            if not await self._more():
                return None
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        frame = Frame()
        for line in raw.decode().split("\n"):
            if line.startswith(":"):
                frame["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            frame[name] = value[1:] if value.startswith(" ") else value
        return frame

    async def event(self) -> Optional[Frame]:
        """The next frame with an ``event`` (comments and ``retry`` skipped)."""
        while True:
            frame = await self.frame()
            if frame is None or "event" in frame:
                return frame

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
