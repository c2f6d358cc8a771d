"""The pure-Python twin of ``_fastmatch``: same names, same answers, same errors.

Used when the compiled module is missing or ``DECNET_BUS_NO_EXTENSIONS=1``.
Every function and class here mirrors one in ``_fastmatch.pyx``; change both.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Hashable, Iterator, Optional

from orjson import loads as _loads

from . import constants as C
from . import errors
from ._grammar import explain
from .errors import BusError, TopicError

# A literal token: printable ASCII except '.', '*' and '>'.
_TOKEN = r"[!-)+-\-/-=?-~]+"
_TOPIC_RE = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
_PATTERN_RE = re.compile(rf"(?:(?:{_TOKEN}|\*)(?:\.(?:{_TOKEN}|\*))*(?:\.>)?|>)")

_VERBS = {v.encode(): v for v in C.VERBS}
_PUB = C.PUB
_EVT = C.EVT


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


# ----------------------------------------------------------- client delivery

_UNDECODED = object()
NEW, ACTIVE, CLOSED = 0, 1, 2


class Event:
    """One event as a subscriber sees it.

    ``payload`` is decoded from ``raw`` (the JSON bytes the publisher sent) on
    first access, and the one Event is shared by every matching Subscription
    of a process: treat the payload as read-only.
    """

    __slots__ = ("topic", "raw", "_payload")
    gap = False

    def __init__(self, topic: str, raw: bytes) -> None:
        self.topic = topic
        self.raw = raw
        self._payload = _UNDECODED

    @property
    def payload(self):
        """The decoded JSON payload (None for an empty body)."""
        if self._payload is _UNDECODED:
            self._payload = _loads(self.raw) if self.raw else None
        return self._payload

    def __repr__(self) -> str:
        return f"Event({self.topic!r}, {self.raw[:60]!r})"


class Gap:
    """Events may have been lost here: resynchronize from the database.

    ``reason`` is ``"overflow"`` (the Subscription's own queue dropped
    ``lost`` events, oldest first), ``"reconnect"`` (the connection to the
    broker was lost and is back), ``"connect"`` (entered while no broker
    answered, live now) or ``"slow_consumer"`` (the broker dropped events
    queued for this connection: the client read too slowly). It comes once
    the subscription is live again, so a resync done on receiving it misses
    nothing.
    """

    __slots__ = ("reason", "lost")
    gap = True
    topic = None
    payload = None

    def __init__(self, reason: str, lost: Optional[int] = None) -> None:
        self.reason = reason
        self.lost = lost

    def __repr__(self) -> str:
        return f"Gap({self.reason!r}, lost={self.lost})"


class EventQueue:
    """The bounded, drop-oldest queue behind a Subscription, and its async iteration.

    ``state`` is NEW, ACTIVE or CLOSED (the Subscription moves it); iteration
    waits while ACTIVE and ends once CLOSED and empty.
    """

    def __init__(self, maxsize: int = C.DEFAULT_SUBSCRIPTION_QUEUE, gaps: bool = True) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.gaps_enabled = gaps
        #: Events dropped by this queue when full.
        self.dropped = 0
        #: Gaps seen (yielded or not).
        self.gaps = 0
        self.state = NEW
        self._queue: deque = deque()
        self._events = 0  # Events in _queue (Gaps excluded)
        self._lost = 0  # dropped since the reader last got a Gap
        self._waiter = None

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return self._events

    def put(self, event: Event) -> None:
        if self._events >= self.maxsize:
            self._drop_oldest()
        self._queue.append(event)
        self._events += 1
        if self._waiter is not None:
            self.wake()

    def put_gap(self, reason: str) -> None:
        self.gaps += 1
        if self.gaps_enabled:
            # One marker per stretch of loss: a Subscription nobody reads, told
            # of loss again and again, must not fill up with Gaps.
            if self._queue and self._queue[-1].gap:
                return
            self._queue.append(Gap(reason))
            self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drop_oldest(self) -> None:
        # Gaps in front of the oldest event now mark one stretch of loss: keep
        # the first of them only, so dropping stays O(1).
        queue, kept = self._queue, None
        while True:
            item = queue.popleft()
            if not item.gap:
                break
            if kept is None:
                kept = item
        while queue and queue[0].gap:  # the dropped event's neighbours join the same stretch
            item = queue.popleft()
            if kept is None:
                kept = item
        if kept is not None:
            queue.appendleft(kept)
        self._events -= 1
        self.dropped += 1
        if not self._lost:
            self.gaps += 1
        self._lost += 1

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            if self._lost:
                lost, self._lost = self._lost, 0
                if self.gaps_enabled:
                    return Gap("overflow", lost)
            if self._queue:
                item = self._queue.popleft()
                if not item.gap:
                    self._events -= 1
                return item
            if self.state != ACTIVE:
                if self.state == NEW:
                    raise BusError("enter the subscription first: async with bus.subscribe(pattern) as sub")
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


def deliver(index: SubscriptionIndex, topic: str, raw: bytes) -> int:
    """Put one Event on every EventQueue of ``index`` whose pattern matches; how many."""
    queues = index.lookup(topic)
    if queues:
        event = Event(topic, raw)
        for queue in queues:
            queue.put(event)
    return len(queues)


def client_feed(decoder: FrameDecoder, index: SubscriptionIndex, data) -> list:
    """Feed ``data`` to a client's decoder: deliver every EVT, return the other frames.

    An EVT without a topic (no broker sends one) has nothing to be delivered
    on: it is returned with the other frames rather than raising."""
    others = []
    for frame in decoder.feed(data):
        if frame[0] is _EVT and frame[1] is not None:
            deliver(index, frame[1], frame[2])
        else:
            others.append(frame)
    return others


# ------------------------------------------------------------ broker routing

_EVT_PREFIX = b"EVT"


class RouteStats:
    """The broker's counters, kept where the routing happens."""

    def __init__(self) -> None:
        self.published = 0  # PUBs routed
        self.routed = 0  # EVT frames queued for subscribers
        self.dropped = 0  # of those, dropped by drop-oldest or lost at close


class FlushSet:
    """What routing leaves the broker to do once it has handled a read.

    ``take()`` hands over the outboxes that got frames since the last take,
    each once, in the order they first did: the broker gives each one write,
    so everything routed while handling one read goes out together.
    ``pressure`` says one of them passed its stall mark while still being
    drained: the publisher of that read may be held a moment.
    """

    def __init__(self) -> None:
        self.boxes: list = []
        self.pressure = False

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self) -> list:
        """The outboxes to flush, oldest first; the set is left empty and without pressure."""
        boxes = self.boxes
        for box in boxes:
            box.listed = False
        self.boxes = []
        self.pressure = False
        return boxes


class Outbox:
    """One connection's outgoing frames: bounded, drop-oldest for EVTs.

    ``send`` queues a frame and lists the outbox in the given FlushSet unless
    it is listed already (an outbox belongs to one FlushSet, its broker's). Over ``limit`` bytes the oldest EVT frames are
    dropped and counted; control frames (PONG, ERR, BYE) never are: they move
    to ``held`` and go out first. Past ``stall_at`` bytes (0: never) it reports
    pressure to the FlushSet, once per ``take``: a reader that is behind but
    reading may have its publishers held, one that never reads asks once.
    Once ``discard`` closed it, it queues nothing more.
    """

    def __init__(self, stats: RouteStats, limit: int, stall_at: int = 0) -> None:
        self.stats = stats
        self.limit = limit
        self.stall_at = stall_at
        self.progress = True  # taken from since it last reported pressure
        self.frames: list = []
        self.head = 0  # frames[:head] were shed
        self.size = 0  # bytes in frames[head:]
        self.held: list = []
        self.listed = False  # in a FlushSet not taken since
        self.closed = False
        self.dropped = 0

    @property
    def pending(self) -> bool:
        """Anything to write."""
        return bool(self.size or self.held)

    def send(self, frame: bytes, flush: FlushSet) -> None:
        """Queue ``frame``; list this outbox in ``flush``."""
        if self.closed:
            return
        self.frames.append(frame)
        self.size += len(frame)
        if not self.listed:
            self.listed = True
            flush.boxes.append(self)
        if self.size > self.stall_at and self.progress and self.stall_at:
            self.progress = False
            flush.pressure = True
        if self.size > self.limit:
            self._shed()

    def _shed(self) -> None:
        frames, dropped = self.frames, 0
        while self.size > self.limit and self.head < len(frames):
            frame = frames[self.head]
            frames[self.head] = None
            self.head += 1
            self.size -= len(frame)
            if frame.startswith(_EVT_PREFIX):
                dropped += 1
            else:
                self.held.append(frame)  # each control frame moves once: shedding stays linear
        if self.head > 1024 and self.head * 2 > len(frames):
            del frames[: self.head]
            self.head = 0
        self.dropped += dropped
        self.stats.dropped += dropped

    def take(self, max_bytes: int = 0) -> list:
        """Frames to write now, oldest first: the held ones, then queued ones up
        to ``max_bytes`` (at least one; all of them when ``max_bytes`` is 0)."""
        self.progress = True
        out, self.held = self.held, []
        frames, head = self.frames, self.head
        if not max_bytes or self.size <= max_bytes:
            if out or head:
                out.extend(frames[head:])
            else:
                out = frames  # the usual case: hand the list itself over
            self.frames, self.head, self.size = [], 0, 0
            return out
        taken = 0
        stop = head
        while stop < len(frames) and taken < max_bytes:
            taken += len(frames[stop])
            stop += 1
        out.extend(frames[head:stop])
        del frames[:stop]
        self.head = 0
        self.size -= taken
        return out

    def discard(self) -> int:
        """Close it: throw away what is queued and queue nothing more; the EVTs lost."""
        lost = sum(1 for frame in self.frames[self.head :] if frame.startswith(_EVT_PREFIX))
        self.frames, self.head, self.size, self.held = [], 0, 0, []
        self.closed = True
        self.dropped += lost
        self.stats.dropped += lost
        return lost


def route(index: SubscriptionIndex, sender: Optional[Outbox], echo: bool, topic: str, evt: bytes, flush: FlushSet) -> int:
    """Queue ``evt`` on every outbox subscribed to ``topic`` (the sender's only
    with ``echo``), listing each in ``flush``; how many."""
    count = 0
    for box in index.lookup(topic):
        if box is not sender or echo:
            box.send(evt, flush)
            count += 1
    return count


def relay(decoder: FrameDecoder, index: SubscriptionIndex, sender: Optional[Outbox], echo: bool,
          stats: RouteStats, flush: FlushSet, limit: int = 0):
    """Route the PUBs that come next from a relay-mode decoder, listing the
    outboxes they reach in ``flush``; return the first frame that is anything
    else (a PUB with a bad or reserved topic included), or None when no whole
    frame is left or, with ``limit``, once that many PUBs were routed."""
    for frame in decoder:
        verb, topic, evt = frame
        if verb is not _PUB or topic is None or topic.startswith(C.RESERVED_PREFIX):
            return frame
        if not (len(topic) <= C.MAX_TOPIC and _TOPIC_RE.fullmatch(topic)):
            return frame
        stats.published += 1
        stats.routed += route(index, sender, echo, topic, evt, flush)
        if limit:
            limit -= 1
            if not limit:
                return None
    return None
