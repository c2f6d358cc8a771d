# Broker-side routing: RouteStats, Outbox, route and relay. Included by
# _fastmatch.pyx; its twin is _pure/routing.py.

cdef str RESERVED_PREFIX = C.RESERVED_PREFIX


cdef class RouteStats:
    """The broker's counters, kept where the routing happens."""
    cdef public Py_ssize_t published  # PUBs routed
    cdef public Py_ssize_t routed     # EVT frames queued for subscribers
    cdef public Py_ssize_t dropped    # of those, dropped by drop-oldest or lost at close
    cdef public bint pressure         # an outbox that drains passed its stall mark


cdef class Outbox:
    """One connection's outgoing frames: bounded, drop-oldest for EVTs.

    ``send`` queues a frame and, the first time since the last ``take``, puts
    the outbox on the broker's ``dirty`` list, so that everything routed while
    handling one read goes out in one write. Over ``limit`` bytes the oldest
    EVT frames are dropped and counted; control frames (PONG, ERR, BYE) never
    are: they move to ``held`` and go out first.
    """
    cdef RouteStats stats
    cdef public Py_ssize_t limit
    cdef list dirty_list
    cdef list frames
    cdef Py_ssize_t head   # frames[:head] were shed
    cdef readonly Py_ssize_t size  # bytes in frames[head:]
    cdef list held
    cdef public bint dirty
    cdef public bint paused
    cdef public bint closing
    cdef public Py_ssize_t dropped
    cdef public object conn  # the connection it belongs to: the broker's business
    cdef public Py_ssize_t stall_at  # 0: never ask publishers to wait
    cdef bint progress  # drained since it last asked

    def __init__(self, RouteStats stats, Py_ssize_t limit, list dirty, Py_ssize_t stall_at=0):
        self.stats = stats
        self.limit = limit
        self.dirty_list = dirty
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

    def send(self, bytes frame):
        self._send(frame)

    cdef inline _send(self, bytes frame):
        if self.closing:
            return
        self.frames.append(frame)
        self.size += PyBytes_GET_SIZE(frame)
        if not self.dirty:
            self.dirty = True
            self.dirty_list.append(self)
        if self.size > self.stall_at and self.progress and self.stall_at:
            # A reader that is behind but reading: ask the publisher to wait a
            # little (once per drain, so one that never reads asks once).
            self.progress = False
            self.stats.pressure = True
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
        self.dirty = False
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
        """Throw away what is queued (the connection is gone); the EVTs lost."""
        cdef Py_ssize_t lost = 0
        for frame in self.frames[self.head:]:
            if (<bytes>frame).startswith(b"EVT"):
                lost += 1
        self.frames = []
        self.head = 0
        self.size = 0
        self.held = []
        self.closing = True
        self.dropped += lost
        self.stats.dropped += lost
        return lost


cdef inline Py_ssize_t _route(SubscriptionIndex index, object sender, bint echo, str topic, bytes evt) except -1:
    cdef tuple boxes = index._lookup(topic)
    cdef Py_ssize_t i, count = 0
    cdef Outbox box
    for i in range(len(boxes)):
        box = <Outbox>boxes[i]
        if box is not sender or echo:
            box._send(evt)
            count += 1
    return count


cpdef Py_ssize_t route(SubscriptionIndex index, object sender, bint echo, str topic, bytes evt) except -1:
    """Queue ``evt`` on every outbox subscribed to ``topic`` (the sender's only
    with ``echo``); how many."""
    return _route(index, sender, echo, topic, evt)


def relay(FrameDecoder decoder, SubscriptionIndex index, Outbox sender, bint echo, RouteStats stats):
    """Route the PUBs that come next from a relay-mode decoder; return the first
    frame that is anything else (a PUB with a bad or reserved topic included),
    or None when no whole frame is left."""
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
        stats.routed += _route(index, sender, echo, <str>topic, <bytes>frame[2])
