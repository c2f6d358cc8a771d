"""The pure-Python twin of ``_fastmatch``: same names, same answers, same errors.

Used when the compiled module is missing or ``DECNET_BUS_NO_EXTENSIONS=1``.
Every function and class here mirrors one in ``_fastmatch.pyx``; change both.
"""

from __future__ import annotations

import re
from typing import Hashable, Iterator, Optional

from . import constants as C
from . import errors
from ._grammar import explain
from .errors import TopicError

# A literal token: printable ASCII except '.', '*' and '>'.
_TOKEN = r"[!-)+-\-/-=?-~]+"
_TOPIC_RE = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
_PATTERN_RE = re.compile(rf"(?:(?:{_TOKEN}|\*)(?:\.(?:{_TOKEN}|\*))*(?:\.>)?|>)")

_VERBS = {v.encode(): v for v in C.VERBS}
_PUB = C.PUB


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic, else raise TopicError saying why."""
    if type(topic) is not str:
        raise TypeError(f"topic must be str, not {type(topic).__name__}")
    if len(topic) <= C.MAX_TOPIC and _TOPIC_RE.fullmatch(topic):
        return topic
    raise TopicError(explain(topic, False), C.E_BAD_TOPIC)


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid pattern, else raise TopicError saying why."""
    if type(pattern) is not str:
        raise TypeError(f"pattern must be str, not {type(pattern).__name__}")
    if len(pattern) <= C.MAX_TOPIC and _PATTERN_RE.fullmatch(pattern):
        return pattern
    raise TopicError(explain(pattern, True), C.E_BAD_PATTERN)


def _match_tokens(ptokens: list, topic: str) -> bool:
    ttokens = topic.split(".")
    last = len(ttokens)
    for i, token in enumerate(ptokens):
        if token == ">":
            return last > i
        if i >= last or (token != "*" and token != ttokens[i]):
            return False
    return len(ptokens) == last


def matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` matches ``pattern`` (SPEC §2); both are validated."""
    check_pattern(pattern)
    check_topic(topic)
    return _match_tokens(pattern.split("."), topic)


class _Node:
    """One level of the token trie: what follows a given prefix of tokens."""

    __slots__ = ("children", "star", "rest", "subs")

    def __init__(self) -> None:
        self.children: dict = {}  # literal token -> _Node
        self.star: Optional[_Node] = None  # the '*' branch
        self.rest: Optional[dict] = None  # subscribers of '<prefix>.>'
        self.subs: Optional[dict] = None  # subscribers of patterns ending here

    def empty(self) -> bool:
        return not (self.children or self.star or self.rest or self.subs)


def _collect(node: _Node, tokens: list, i: int, out: dict) -> None:
    n = len(tokens)
    while True:
        if i == n:
            if node.subs:
                out.update(node.subs)
            return
        if node.rest:
            out.update(node.rest)
        if node.star is not None:
            _collect(node.star, tokens, i + 1, out)
        node = node.children.get(tokens[i])
        if node is None:
            return
        i += 1


class SubscriptionIndex:
    """Which subscribers' patterns match a topic: a token trie with a result cache.

    A lookup walks one branch per literal token plus the ``*`` and ``>``
    branches, so its cost does not grow with patterns that do not match. Results
    are cached per topic (``cache_size`` entries, 0 turns the cache off; the
    oldest entry goes first), and add/remove drop exactly the cached topics the
    pattern matches.
    """

    def __init__(self, cache_size: int = C.DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._root = _Node()
        self._count = 0
        self._cache: dict = {}
        self.cache_size = cache_size

    def __len__(self) -> int:
        """The number of (pattern, subscriber) pairs held."""
        return self._count

    @property
    def cached(self) -> int:
        """How many topics have their lookup result cached (at most ``cache_size``)."""
        return len(self._cache)

    def add(self, pattern: str, subscriber: Hashable) -> bool:
        """Subscribe ``subscriber`` to ``pattern``; False if it already was."""
        check_pattern(pattern)
        tokens = pattern.split(".")
        node = self._root
        for token in tokens[:-1]:
            node = _child(node, token)
        last = tokens[-1]
        if last == ">":
            if node.rest is None:
                node.rest = {}
            subs = node.rest
        else:
            node = _child(node, last)
            if node.subs is None:
                node.subs = {}
            subs = node.subs
        if subscriber in subs:
            return False
        subs[subscriber] = None
        self._count += 1
        self._invalidate(tokens)
        return True

    def remove(self, pattern: str, subscriber: Hashable) -> bool:
        """Unsubscribe ``subscriber`` from ``pattern``; False if it was not subscribed."""
        check_pattern(pattern)
        tokens = pattern.split(".")
        path = []
        node = self._root
        for token in tokens[:-1]:
            nxt = node.star if token == "*" else node.children.get(token)
            if nxt is None:
                return False
            path.append((node, token))
            node = nxt
        last = tokens[-1]
        if last == ">":
            subs = node.rest
        else:
            nxt = node.star if last == "*" else node.children.get(last)
            if nxt is None:
                return False
            path.append((node, last))
            node = nxt
            subs = node.subs
        if not subs or subscriber not in subs:
            return False
        del subs[subscriber]
        self._count -= 1
        # Prune the branch bottom-up so churn does not leave dead nodes behind.
        while path and node.empty():
            parent, token = path.pop()
            if token == "*":
                parent.star = None
            else:
                del parent.children[token]
            node = parent
        self._invalidate(tokens)
        return True

    def lookup(self, topic: str) -> tuple:
        """The subscribers whose patterns match ``topic``, each once.

        ``topic`` must be valid (check_topic): the broker checks every PUB
        before it routes it, and checking again here would cost every event.
        """
        cache = self._cache
        found = cache.get(topic)
        if found is not None:
            return found
        out: dict = {}
        _collect(self._root, topic.split("."), 0, out)
        found = tuple(out)
        if self.cache_size:
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
            cache[topic] = found
        return found

    def _invalidate(self, ptokens: list) -> None:
        cache = self._cache
        if cache:
            for topic in [t for t in cache if _match_tokens(ptokens, t)]:
                del cache[topic]


def _child(node: _Node, token: str) -> _Node:
    if token == "*":
        if node.star is None:
            node.star = _Node()
        return node.star
    child = node.children.get(token)
    if child is None:
        child = node.children[token] = _Node()
    return child


class FrameDecoder:
    """Incremental decoder of the SPEC §3 byte stream.

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
            raise ValueError(f"max_payload must be within 0..{C.MAX_LEN_FIELD}")
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
            raise _again(self._error)
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
            raise _again(self._error)
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
        raise _again(error)


def _again(error: errors.FrameError) -> errors.FrameError:
    return errors.FrameError(error.code, str(error))


def _first_non_ascii(line) -> errors.FrameError:
    for offset, byte in enumerate(line):
        if byte > 0x7F:
            return errors.line_not_ascii(offset, byte)
    raise AssertionError("line is ASCII")


def encode(verb: str, arg: Optional[str] = None, body=b"") -> bytes:
    """One frame: ``VERB [SP ARG] LF LEN BODY`` (SPEC §3)."""
    if type(verb) is not str:
        raise TypeError(f"verb must be str, not {type(verb).__name__}")
    if verb not in C.VERBS:
        raise errors.unknown_verb(verb.encode("ascii", "replace"))
    if arg is None:
        line = verb.encode() + b"\n"
    else:
        if type(arg) is not str:
            raise TypeError(f"arg must be str or None, not {type(arg).__name__}")
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
