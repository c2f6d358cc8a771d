"""Broker-side routing: ``RouteStats``, ``FlushSet``, ``Outbox``, ``route`` and ``relay``.

The pure-Python twin of ``_routing.pxi``: same names, same answers, same errors.
"""

from __future__ import annotations

from typing import Optional

from .. import constants as C
from .codec import FrameDecoder
from .index import SubscriptionIndex
from .topics import _TOPIC_RE

_PUB = C.PUB

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
    ``pressure`` says one of them is past its stall mark while still being
    drained: the publisher of that read may be held a moment.
    ``now`` is the broker's clock, set once per read (a clock call per frame
    would cost every event); ``window`` how long an outbox past its mark
    keeps asking, from the first time it does after it was taken from.
    """

    def __init__(self, window: float = 0.0) -> None:
        self.boxes: list = []
        self.pressure = False
        self.now = 0.0
        self.window = float(window)

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
    it is listed already (an outbox belongs to one FlushSet, its broker's).
    Over ``limit`` bytes the oldest EVT frames are dropped and counted; control
    frames (PONG, ERR, BYE) never are: they move to ``held`` and go out first.
    Past ``stall_at`` bytes (0: never) it reports pressure to the FlushSet on
    every send for ``flush.window`` seconds after the first send past the mark
    that followed a ``take``: a reader that is behind but reading may have all
    its publishers held, one that never reads asks for one window only.
    Once ``discard`` closed it, it queues nothing more.
    """

    def __init__(self, stats: RouteStats, limit: int, stall_at: int = 0) -> None:
        self.stats = stats
        self.limit = limit
        self.stall_at = stall_at
        self.progress = True  # taken from since its pressure window last opened
        self.asks_until = 0.0  # end of that window, on the FlushSet's clock
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
        if self.size > self.stall_at and self.stall_at:
            # The window opens here rather than in take(), which has no clock;
            # either way it ends a bounded time after the reader last read.
            if self.progress:
                self.progress = False
                self.asks_until = flush.now + flush.window
            if flush.now <= self.asks_until:
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
    frame is left, once a PUB left ``flush`` with pressure (the rest of the
    read waits in the decoder while its publisher is held), or, with
    ``limit``, once that many PUBs were routed."""
    for frame in decoder:
        verb, topic, evt = frame
        if verb is not _PUB or topic is None or topic.startswith(C.RESERVED_PREFIX):
            return frame
        if not (len(topic) <= C.MAX_TOPIC and _TOPIC_RE.fullmatch(topic)):
            return frame
        stats.published += 1
        stats.routed += route(index, sender, echo, topic, evt, flush)
        if flush.pressure:
            return None
        if limit:
            limit -= 1
            if not limit:
                return None
    return None
