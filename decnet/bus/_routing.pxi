# Broker-side routing: RouteStats, FlushSet, Outbox, route and relay. Included
# by _fastmatch.pyx; its twin is _pure/routing.py.

cdef str RESERVED_PREFIX = C.RESERVED_PREFIX


cdef class RouteStats:
    """The broker's counters, kept where the routing happens."""
    cdef public Py_ssize_t published  # PUBs routed
    cdef public Py_ssize_t routed     # EVT frames queued for subscribers
    cdef public Py_ssize_t dropped    # of those, dropped by drop-oldest or lost at close


cdef class FlushSet:
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
    cdef list boxes
    cdef public bint pressure
    cdef public double now
    cdef public double window

    def __init__(self, double window=0.0):
        self.boxes = []
        self.window = window

    def __len__(self):
        return len(self.boxes)

    cpdef list take(self):
        """The outboxes to flush, oldest first; the set is left empty and without pressure."""
        cdef list boxes = self.boxes
        cdef Outbox box
        for box in boxes:
            box.listed = False
        self.boxes = []
        self.pressure = False
        return boxes


cdef class Outbox:
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
    cdef RouteStats stats
    cdef public Py_ssize_t limit
    cdef list frames
    cdef Py_ssize_t head   # frames[:head] were shed
    cdef readonly Py_ssize_t size  # bytes in frames[head:]
    cdef list held
    cdef readonly bint listed  # in a FlushSet not taken since
    cdef readonly bint closed
    cdef readonly Py_ssize_t dropped
    cdef readonly Py_ssize_t stall_at
    cdef bint progress  # taken from since its pressure window last opened
    cdef double asks_until  # end of that window, on the FlushSet's clock

    def __init__(self, RouteStats stats not None, Py_ssize_t limit, Py_ssize_t stall_at=0):
        self.stats = stats
        self.limit = limit
        self.frames = []
        self.head = 0
        self.size = 0
        self.held = []
        self.stall_at = stall_at
        self.progress = True

    @property
    def pending(self):
        """Anything to write."""
        return bool(self.size or self.held)

    def send(self, bytes frame not None, FlushSet flush not None):
        """Queue ``frame``; list this outbox in ``flush``."""
        self._send(frame, flush)

    cdef inline _send(self, bytes frame, FlushSet flush):
        if self.closed:
            return
        self.frames.append(frame)
        self.size += PyBytes_GET_SIZE(frame)
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

    cdef _shed(self):
        cdef Py_ssize_t dropped = 0
        cdef bytes frame
        cdef list frames = self.frames
        while self.size > self.limit and self.head < len(frames):
            frame = <bytes>frames[self.head]
            frames[self.head] = None
            self.head += 1
            self.size -= PyBytes_GET_SIZE(frame)
            if memcmp(PyBytes_AS_STRING(frame), b"EVT", 3) == 0:
                dropped += 1
            else:
                self.held.append(frame)  # each control frame moves once: shedding stays linear
        if self.head > 1024 and self.head * 2 > len(frames):
            del frames[:self.head]
            self.head = 0
        self.dropped += dropped
        self.stats.dropped += dropped

    cpdef list take(self, Py_ssize_t max_bytes=0):
        """Frames to write now, oldest first: the held ones, then queued ones up
        to ``max_bytes`` (at least one; all of them when ``max_bytes`` is 0)."""
        cdef list out = self.held
        cdef list frames = self.frames
        cdef Py_ssize_t head = self.head, stop, taken = 0
        self.progress = True
        self.held = []
        if not max_bytes or self.size <= max_bytes:
            if out or head:
                out.extend(frames[head:])
            else:
                out = frames  # the usual case: hand the list itself over
            self.frames = []
            self.head = 0
            self.size = 0
            return out
        stop = head
        while stop < len(frames) and taken < max_bytes:
            taken += PyBytes_GET_SIZE(<bytes>frames[stop])
            stop += 1
        out.extend(frames[head:stop])
        del frames[:stop]
        self.head = 0
        self.size -= taken
        return out

    def discard(self):
        """Close it: throw away what is queued and queue nothing more; the EVTs lost."""
        cdef Py_ssize_t lost = 0
        for frame in self.frames[self.head:]:
            if (<bytes>frame).startswith(b"EVT"):
                lost += 1
        self.frames = []
        self.head = 0
        self.size = 0
        self.held = []
        self.closed = True
        self.dropped += lost
        self.stats.dropped += lost
        return lost


cdef inline Py_ssize_t _route(SubscriptionIndex index, object sender, bint echo, str topic, bytes evt, FlushSet flush) except -1:
    cdef tuple boxes = index._lookup(topic)
    cdef Py_ssize_t i, count = 0
    cdef Outbox box
    for i in range(len(boxes)):
        box = <Outbox>boxes[i]
        if box is not sender or echo:
            box._send(evt, flush)
            count += 1
    return count


def route(SubscriptionIndex index not None, object sender, bint echo, str topic not None, bytes evt not None,
          FlushSet flush not None):
    """Queue ``evt`` on every outbox subscribed to ``topic`` (the sender's only
    with ``echo``), listing each in ``flush``; how many."""
    return _route(index, sender, echo, topic, evt, flush)


def relay(FrameDecoder decoder not None, SubscriptionIndex index not None, Outbox sender, bint echo,
          RouteStats stats not None, FlushSet flush not None, Py_ssize_t limit=0):
    """Route the PUBs that come next from a relay-mode decoder, listing the
    outboxes they reach in ``flush``; return the first frame that is anything
    else (a PUB with a bad or reserved topic included), or None when no whole
    frame is left, once a PUB left ``flush`` with pressure (the rest of the
    read waits in the decoder while its publisher is held), or, with
    ``limit``, once that many PUBs were routed."""
    cdef tuple frame
    cdef object topic
    while True:
        frame = decoder._next()
        if frame is None:
            return None
        if frame[0] is not V_PUB:
            return frame
        topic = frame[1]
        if topic is None or not _valid(<str>topic, False) or (<str>topic).startswith(RESERVED_PREFIX):
            return frame
        stats.published += 1
        stats.routed += _route(index, sender, echo, <str>topic, <bytes>frame[2], flush)
        if flush.pressure:
            return None
        if limit:
            limit -= 1
            if not limit:
                return None
