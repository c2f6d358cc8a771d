"""The frame codec (docs/protocol.md §3): ``FrameDecoder``, incremental, and ``encode``.

The pure-Python twin of ``_codec.pxi``: same names, same answers, same errors.
"""

from __future__ import annotations

from typing import Iterator, Optional

from .. import constants as C
from .. import errors
from .._shared import BAD_MAX_PAYLOAD, not_str, not_str_or_none

_VERBS = {v.encode(): v for v in C.VERBS}
_PUB = C.PUB


class FrameDecoder:
    """Incremental decoder of the docs/protocol.md §3 byte stream.

    ``feed(data)`` appends bytes and returns the decoder, which iterates over
    the whole frames now available as ``(verb, arg, body)`` tuples: ``verb``
    is one of the constants of ``decnet.bus.constants``, ``arg`` a str or None,
    ``body`` bytes. A framing error raises FrameError at the frame that broke
    the rule, after every earlier frame came out; the decoder then stays broken.

    With ``relay=True`` (the broker), a PUB frame comes out as
    ``(PUB, topic, evt)`` where ``evt`` is the complete EVT frame to forward,
    built with a single copy of the body straight from the read buffer.
    """

    def __init__(self, max_payload: int = C.DEFAULT_MAX_PAYLOAD, relay: bool = False) -> None:
        if not 0 <= max_payload <= C.MAX_LEN_FIELD:
            raise ValueError(BAD_MAX_PAYLOAD)
        self.max_payload = max_payload
        self.relay = relay
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._error: Optional[errors.FrameError] = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf) - self._pos

    def feed(self, data) -> "FrameDecoder":
        if self._error is not None:
            raise errors.again(self._error)
        if self._pos >= len(self._buf):
            self._buf = data if type(data) is bytes else bytes(data)
        else:
            if type(self._buf) is bytes:
                self._buf = bytearray(self._buf[self._pos :])
            elif self._pos:
                del self._buf[: self._pos]
            self._buf += data
        self._pos = 0
        return self

    def __iter__(self) -> Iterator[tuple]:
        return self

    def __next__(self) -> tuple:
        if self._error is not None:
            raise errors.again(self._error)
        buf, pos = self._buf, self._pos
        end = len(buf)
        if pos >= end:
            self._buf, self._pos = b"", 0
            raise StopIteration
        nl = buf.find(b"\n", pos, pos + C.MAX_LINE)
        stop = nl if nl >= 0 else min(end, pos + C.MAX_LINE)
        line = buf[pos:stop]
        if not line.isascii():
            self._fail(_first_non_ascii(line))
        if nl < 0:
            if end - pos >= C.MAX_LINE:
                self._fail(errors.line_too_long())
            self._keep()
        sp = line.find(b" ")
        verb = _VERBS.get(bytes(line if sp < 0 else line[:sp]))
        if verb is None:
            self._fail(errors.unknown_verb(bytes(line if sp < 0 else line[:sp])))
        start = nl + 1 + C.LEN_SIZE
        if start > end:
            self._keep()
        size = int.from_bytes(buf[nl + 1 : start], "big")
        if size > self.max_payload:
            self._fail(errors.payload_too_large(size, self.max_payload))
        stop = start + size
        if stop > end:
            self._keep()
        self._pos = stop
        arg = None if sp < 0 else line[sp + 1 :].decode("ascii")
        if verb is _PUB and self.relay:
            return verb, arg, b"EVT" + buf[pos + 3 : stop]
        return verb, arg, bytes(buf[start:stop])

    def _keep(self):
        """Stop iterating; the incomplete frame at ``_pos`` waits for more bytes."""
        raise StopIteration

    def _fail(self, error: errors.FrameError):
        self._error = error
        raise errors.again(error)


def _first_non_ascii(line) -> errors.FrameError:
    for offset, byte in enumerate(line):
        if byte > 0x7F:
            return errors.line_not_ascii(offset, byte)
    raise AssertionError("line is ASCII")


def encode(verb: str, arg: Optional[str] = None, body=b"") -> bytes:
    """One frame: ``VERB [SP ARG] LF LEN BODY`` (docs/protocol.md §3)."""
    if type(verb) is not str:
        raise not_str("verb", verb)
    if verb not in C.VERBS:
        raise errors.unknown_verb(verb.encode("ascii", "replace"))
    if arg is None:
        line = verb.encode() + b"\n"
    else:
        if type(arg) is not str:
            raise not_str_or_none("arg", arg)
        if not arg.isascii():
            raise errors.bad_line("argument is not ASCII")
        if "\n" in arg:
            raise errors.bad_line("argument contains a LF")
        line = f"{verb} {arg}\n".encode()
        if len(line) > C.MAX_LINE:
            raise errors.bad_line(f"line is longer than {C.MAX_LINE} bytes")
    size = len(body) if type(body) is bytes else memoryview(body).nbytes
    if size > C.MAX_LEN_FIELD:
        raise errors.payload_too_large(size, C.MAX_LEN_FIELD)
    return line + size.to_bytes(4, "big") + body
