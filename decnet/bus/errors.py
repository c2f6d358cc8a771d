"""Exceptions of the bus, shared by the compiled hot path and its twin.

The frame-error constructors live here too, so both decoders raise the very
same code and message for the same bytes.
"""

from __future__ import annotations

from . import constants as C


class BusError(Exception):
    """Base class of every error the bus raises."""


class TopicError(BusError, ValueError):
    """A topic, pattern or topic id breaks the grammar of docs/protocol.md §2.

    ``code`` is ``bad_topic`` or ``bad_pattern``, the code an ERR frame carries.
    """

    def __init__(self, message: str, code: str = C.E_BAD_TOPIC) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooLarge(BusError, ValueError):
    """A payload whose JSON is over the broker's ``max_payload``: a caller's mistake."""


class FrameError(BusError):
    """The byte stream broke the framing of docs/protocol.md §3; it cannot be resynchronized.

    ``code`` names the rule that was broken (``line_too_long``, ``unknown_verb``,
    ``payload_too_large``, ...), the code an ERR frame carries.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def line_too_long() -> FrameError:
    return FrameError(C.E_LINE_TOO_LONG, f"frame line has no LF within {C.MAX_LINE} bytes")


def line_not_ascii(offset: int, byte: int) -> FrameError:
    return FrameError(C.E_LINE_NOT_ASCII, f"frame line has non-ASCII byte 0x{byte:02x} at offset {offset}")


def unknown_verb(verb: bytes) -> FrameError:
    return FrameError(C.E_UNKNOWN_VERB, f"unknown verb {verb[:16]!r}")


def payload_too_large(size: int, limit: int) -> FrameError:
    return FrameError(C.E_PAYLOAD_TOO_LARGE, f"body of {size} bytes exceeds the limit of {limit} bytes")


def bad_line(reason: str) -> FrameError:
    return FrameError(C.E_BAD_LINE, f"cannot encode frame line: {reason}")


def again(error: FrameError) -> FrameError:
    """A fresh copy of ``error``: what a broken decoder raises on every later call."""
    return FrameError(error.code, str(error))
