# Client-side delivery: Event, the EventQueue behind a Subscription, deliver
# and client_feed. Included by _fastmatch.pyx; its twin is _pure/delivery.py.

cdef object _UNDECODED = object()
cdef object _loads = orjson.loads
cdef object _get_running_loop = asyncio.get_running_loop
cdef object _deque = collections.deque
cdef int S_NEW = NEW, S_ACTIVE = ACTIVE  # EventQueue.state (_shared), as C ints


@cython.no_gc  # str, bytes and a decoded JSON value: an Event is never part of a cycle
@cython.freelist(1024)
cdef class Event:
    """One event as a subscriber sees it.

    ``payload`` is decoded from ``raw`` (the JSON bytes the publisher sent) on
    first access, and the one Event is shared by every matching Subscription
    of a process: treat the payload as read-only.
    """
    cdef readonly str topic
    cdef readonly bytes raw
    cdef object _payload

    def __init__(self, str topic, bytes raw):
        self.topic = topic
        self.raw = raw
        self._payload = _UNDECODED

    @property
    def gap(self):
        return False

    @property
    def payload(self):
        """The decoded JSON payload (None for an empty body)."""
        if self._payload is _UNDECODED:
            self._payload = _loads(self.raw) if self.raw else None
        return self._payload

    def __repr__(self):
        return f"Event({self.topic!r}, {self.raw[:60]!r})"


cdef inline Event _event(str topic, bytes raw):
    cdef Event event = Event.__new__(Event)
    event.topic = topic
    event.raw = raw
    event._payload = _UNDECODED
    return event


cdef class EventQueue:
    """The bounded, drop-oldest queue behind a Subscription, and its async iteration.

    ``state`` is NEW, ACTIVE or CLOSED (the Subscription moves it); iteration
    waits for events while ACTIVE, and otherwise ends once the queue is empty.
    """
    cdef object _queue
    cdef readonly Py_ssize_t maxsize
    cdef public bint gaps_enabled
    cdef public Py_ssize_t dropped
    cdef public Py_ssize_t gaps
    cdef public int state
    cdef Py_ssize_t _events
    cdef Py_ssize_t _lost
    cdef object _waiter

    def __init__(self, Py_ssize_t maxsize=C.DEFAULT_SUBSCRIPTION_QUEUE, bint gaps=True):
        if maxsize < 1:
            raise ValueError(BAD_MAXSIZE)
        self.maxsize = maxsize
        self.gaps_enabled = gaps
        self.dropped = 0
        self.gaps = 0
        self.state = S_NEW
        self._queue = _deque()
        self._events = 0
        self._lost = 0
        self._waiter = None

    @property
    def queued(self):
        """Events waiting to be read."""
        return self._events

    def put(self, event):
        self._put(event)

    cdef inline _put(self, event):
        # cdef, not cpdef: Subscription subclasses this in Python, and a cpdef
        # call would look for an override on every event.
        if self._events >= self.maxsize:
            self._drop_oldest()
        self._queue.append(event)
        self._events += 1
        if self._waiter is not None:
            self.wake()

    def put_gap(self, reason):
        self.gaps += 1
        if self.gaps_enabled:
            # One marker per stretch of loss: a Subscription nobody reads, told
            # of loss again and again, must not fill up with Gaps.
            if self._queue and type(self._queue[len(self._queue) - 1]) is Gap:  # wraparound is off
                return
            self._queue.append(Gap(reason))
            self.wake()

    cpdef wake(self):
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    cdef _drop_oldest(self):
        # Gaps in front of the oldest event now mark one stretch of loss: keep
        # the first of them only, so dropping stays O(1).
        queue, kept = self._queue, None
        while True:
            item = queue.popleft()
            if type(item) is Event:
                break
            if kept is None:
                kept = item
        while queue and type(queue[0]) is Gap:  # the dropped event's neighbours join the same stretch
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
                lost = self._lost
                self._lost = 0
                if self.gaps_enabled:
                    return Gap("overflow", lost)
            if self._queue:
                item = self._queue.popleft()
                if type(item) is Event:
                    self._events -= 1
                return item
            if self.state != S_ACTIVE:
                raise StopAsyncIteration
            self._waiter = _get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


cpdef Py_ssize_t deliver(SubscriptionIndex index, str topic, bytes raw) except -1:
    """Put one Event on every EventQueue of ``index`` whose pattern matches; how many."""
    cdef tuple queues = index._lookup(topic)
    cdef Py_ssize_t i, n = len(queues)
    cdef Event event
    if n:
        event = _event(topic, raw)
        for i in range(n):
            (<EventQueue>queues[i])._put(event)
    return n


def client_feed(FrameDecoder decoder, SubscriptionIndex index, data):
    """Feed ``data`` to a client's decoder: deliver every EVT, return the other frames.

    An EVT without a topic (no broker sends one) has nothing to be delivered
    on: it is returned with the other frames rather than raising."""
    cdef list others = []
    cdef tuple frame
    decoder.feed(data)
    while True:
        frame = decoder._next()
        if frame is None:
            return others
        if frame[0] is V_EVT and frame[1] is not None:
            deliver(index, <str>frame[1], <bytes>frame[2])
        else:
            others.append(frame)
