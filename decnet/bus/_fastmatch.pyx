# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled hot path: topic checks, matching, the subscription index, the frame codec.

``_purematch.py`` is its twin and the reference for behaviour; every name here
has one there with the same answers and errors. Change both.
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport PyObject
from libc.string cimport memchr, memcmp, memcpy

import asyncio
import collections

import orjson

from . import constants as C
from . import errors
from ._grammar import explain
from .errors import BusError, TopicError

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object)
    const void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)
    PyObject* PyDict_GetItemWithError(object, object)

cdef enum:
    MAX_LINE = 512
    MAX_TOPIC = 255
    LEN_SIZE = 4

# The decoder hands out these very objects, so ``verb is PUB`` works.
cdef str V_HELLO = C.HELLO, V_SUB = C.SUB, V_UNSUB = C.UNSUB, V_PUB = C.PUB
cdef str V_EVT = C.EVT, V_PING = C.PING, V_PONG = C.PONG, V_ERR = C.ERR, V_BYE = C.BYE
cdef bytes EMPTY = b""
cdef frozenset VERBS = C.VERBS
cdef str E_BAD_TOPIC = C.E_BAD_TOPIC, E_BAD_PATTERN = C.E_BAD_PATTERN
cdef Py_ssize_t DEFAULT_CACHE_SIZE = C.DEFAULT_CACHE_SIZE
cdef object DEFAULT_MAX_PAYLOAD = C.DEFAULT_MAX_PAYLOAD
cdef unsigned long long MAX_LEN_FIELD = C.MAX_LEN_FIELD


# --------------------------------------------------------------------- topics

cdef bint _valid(str s, bint pattern):
    """Single pass over the bytes: SPEC §2 for a topic or, with ``pattern``, a pattern."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, start = 0
    cdef const unsigned char* p
    cdef unsigned char c
    cdef bint wild = False
    if n == 0 or n > MAX_TOPIC or not PyUnicode_IS_COMPACT_ASCII(s):
        return False
    p = <const unsigned char*>PyUnicode_DATA(s)
    for i in range(n + 1):
        c = p[i] if i < n else 0x2E
        if c == 0x2E:  # '.' or the end: judge the token just closed
            if i == start:
                return False
            if wild:
                if not pattern or i - start != 1:
                    return False
                if p[start] == 0x3E and i != n:  # '>' only as the last token
                    return False
                wild = False
            start = i + 1
        elif c < 0x21 or c > 0x7E:
            return False
        elif c == 0x2A or c == 0x3E:  # '*' or '>'
            wild = True
    return True


cpdef str check_topic(topic):
    """Return ``topic`` if it is a valid topic, else raise TopicError saying why."""
    if type(topic) is not str:
        raise TypeError(f"topic must be str, not {type(topic).__name__}")
    if _valid(<str>topic, False):
        return <str>topic
    raise TopicError(explain(topic, False), E_BAD_TOPIC)


cpdef str check_pattern(pattern):
    """Return ``pattern`` if it is a valid pattern, else raise TopicError saying why."""
    if type(pattern) is not str:
        raise TypeError(f"pattern must be str, not {type(pattern).__name__}")
    if _valid(<str>pattern, True):
        return <str>pattern
    raise TopicError(explain(pattern, True), E_BAD_PATTERN)


cdef bint _match_tokens(list ptokens, str topic):
    cdef list ttokens = topic.split(".")
    cdef Py_ssize_t i, last = len(ttokens), n = len(ptokens)
    cdef str token
    for i in range(n):
        token = <str>ptokens[i]
        if token == ">":
            return last > i
        if i >= last or (token != "*" and token != <str>ttokens[i]):
            return False
    return n == last


cpdef bint matches(pattern, topic) except -1:
    """True if ``topic`` matches ``pattern`` (SPEC §2); both are validated."""
    check_pattern(pattern)
    check_topic(topic)
    return _match_tokens((<str>pattern).split("."), <str>topic)


# ---------------------------------------------------------------------- index

cdef class _Node:
    """One level of the token trie: what follows a given prefix of tokens."""
    cdef dict children   # literal token -> _Node
    cdef _Node star      # the '*' branch
    cdef dict rest       # subscriber -> _Entry, for '<prefix>.>'
    cdef dict subs       # subscriber -> _Entry, for patterns ending here
    # Snapshots of rest/subs values (None when empty), which lookups iterate:
    # subscriptions change rarely, lookups happen for every event.
    cdef tuple rest_t
    cdef tuple subs_t

    def __cinit__(self):
        self.children = {}

    cdef bint empty(self):
        return not (self.children or self.star is not None or self.rest or self.subs)


cdef class _Entry:
    """A subscriber as the index holds it: ``mark`` dedupes it within one lookup
    without hashing it, which is most of what a lookup would otherwise cost."""
    cdef object subscriber
    cdef Py_ssize_t patterns
    cdef unsigned long long mark


cdef struct _Found:
    # The subscribers one lookup found, as borrowed pointers: the index holds
    # them, and no Python code runs until the result tuple owns them.
    PyObject** items
    Py_ssize_t n
    Py_ssize_t cap
    unsigned long long mark


cdef int _take(tuple entries, _Found* found) except -1:
    cdef Py_ssize_t j
    cdef _Entry entry
    cdef PyObject** grown
    for j in range(PyTuple_GET_SIZE(entries)):
        entry = <_Entry>PyTuple_GET_ITEM(entries, j)
        if entry.mark == found.mark:
            continue
        entry.mark = found.mark
        if found.n == found.cap:
            grown = <PyObject**>PyMem_Realloc(found.items, (found.cap * 2 + 16) * sizeof(PyObject*))
            if grown is NULL:
                raise MemoryError()
            found.items = grown
            found.cap = found.cap * 2 + 16
        found.items[found.n] = <PyObject*>entry.subscriber
        found.n += 1
    return 0


cdef int _collect(_Node node, list tokens, Py_ssize_t i, Py_ssize_t n, _Found* found) except -1:
    cdef PyObject* child
    while True:
        if i == n:
            if node.subs_t is not None:
                _take(node.subs_t, found)
            return 0
        if node.rest_t is not None:
            _take(node.rest_t, found)
        if node.star is not None:
            _collect(node.star, tokens, i + 1, n, found)
        # Tokens are str: looking one up cannot raise, so no error check here.
        child = PyDict_GetItemWithError(node.children, <object>PyList_GET_ITEM(tokens, i))
        if child is NULL:
            return 0
        node = <_Node>child
        i += 1


cdef inline tuple _snapshot(dict entries):
    return tuple(entries.values()) if entries else None


cdef _Node _child(_Node node, str token):
    cdef _Node child
    if token == "*":
        if node.star is None:
            node.star = _Node()
        return node.star
    child = node.children.get(token)
    if child is None:
        child = _Node()
        node.children[token] = child
    return child


cdef class SubscriptionIndex:
    """Which subscribers' patterns match a topic: a token trie with a result cache.

    A lookup walks one branch per literal token plus the ``*`` and ``>``
    branches, so its cost does not grow with patterns that do not match. Results
    are cached per topic (``cache_size`` entries, 0 turns the cache off; the
    oldest entry goes first), and add/remove drop exactly the cached topics the
    pattern matches.
    """
    cdef _Node _root
    cdef Py_ssize_t _count
    cdef dict _cache
    cdef dict _entries   # subscriber -> _Entry, shared by all its patterns
    cdef _Found _found
    cdef public Py_ssize_t cache_size

    def __init__(self, Py_ssize_t cache_size=DEFAULT_CACHE_SIZE):
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._root = _Node()
        self._count = 0
        self._cache = {}
        self._entries = {}
        self.cache_size = cache_size

    def __dealloc__(self):
        PyMem_Free(self._found.items)

    def __len__(self):
        """The number of (pattern, subscriber) pairs held."""
        return self._count

    @property
    def cached(self):
        """How many topics have their lookup result cached (at most ``cache_size``)."""
        return len(self._cache)

    cpdef bint add(self, str pattern, object subscriber) except -1:
        """Subscribe ``subscriber`` to ``pattern``; False if it already was."""
        check_pattern(pattern)
        cdef list tokens = pattern.split(".")
        cdef _Node node = self._root
        cdef Py_ssize_t i, n = len(tokens)
        cdef dict subs
        cdef _Entry entry
        for i in range(n - 1):
            node = _child(node, <str>tokens[i])
        last = <str>tokens[n - 1]
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
        entry = self._entries.get(subscriber)
        if entry is None:
            entry = _Entry()
            entry.subscriber = subscriber
            self._entries[subscriber] = entry
        entry.patterns += 1
        subs[subscriber] = entry
        if last == ">":
            node.rest_t = _snapshot(subs)
        else:
            node.subs_t = _snapshot(subs)
        self._count += 1
        self._invalidate(tokens)
        return True

    cpdef bint remove(self, str pattern, object subscriber) except -1:
        """Unsubscribe ``subscriber`` from ``pattern``; False if it was not subscribed."""
        check_pattern(pattern)
        cdef list tokens = pattern.split(".")
        cdef list path = []
        cdef _Node node = self._root, parent
        cdef object nxt
        cdef dict subs
        cdef _Entry entry
        cdef Py_ssize_t i, n = len(tokens)
        cdef str token
        for i in range(n - 1):
            token = <str>tokens[i]
            nxt = node.star if token == "*" else node.children.get(token)
            if nxt is None:
                return False
            path.append((node, token))
            node = <_Node>nxt
        token = <str>tokens[n - 1]
        if token == ">":
            subs = node.rest
        else:
            nxt = node.star if token == "*" else node.children.get(token)
            if nxt is None:
                return False
            path.append((node, token))
            node = <_Node>nxt
            subs = node.subs
        if not subs or subscriber not in subs:
            return False
        entry = <_Entry>subs.pop(subscriber)
        if token == ">":
            node.rest_t = _snapshot(subs)
        else:
            node.subs_t = _snapshot(subs)
        entry.patterns -= 1
        if not entry.patterns:
            del self._entries[subscriber]
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

    def lookup(self, str topic):
        """The subscribers whose patterns match ``topic``, each once.

        ``topic`` must be valid (check_topic): the broker checks every PUB
        before it routes it, and checking again here would cost every event.
        """
        return self._lookup(topic)

    cdef tuple _lookup(self, str topic):
        if topic is None:
            raise TypeError("topic must be str, not NoneType")
        cdef PyObject* hit = PyDict_GetItem(self._cache, topic)
        if hit is not NULL:
            return <tuple>hit
        cdef list tokens = topic.split(".")
        cdef Py_ssize_t j
        cdef object subscriber
        self._found.n = 0
        self._found.mark += 1
        _collect(self._root, tokens, 0, len(tokens), &self._found)
        cdef tuple found = PyTuple_New(self._found.n)
        for j in range(self._found.n):
            subscriber = <object>self._found.items[j]
            Py_INCREF(subscriber)  # PyTuple_SET_ITEM steals it
            PyTuple_SET_ITEM(found, j, subscriber)
        if self.cache_size:
            if len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
            PyDict_SetItem(self._cache, topic, found)
        return found

    cdef _invalidate(self, list ptokens):
        if self._cache:
            for topic in [t for t in self._cache if _match_tokens(ptokens, <str>t)]:
                del self._cache[topic]


# ---------------------------------------------------------------------- codec

cdef inline str _verb(const char* p, Py_ssize_t n):
    """The verb constant spelt by ``p[:n]``, or None."""
    if n == 3:
        if memcmp(p, b"PUB", 3) == 0: return V_PUB
        if memcmp(p, b"EVT", 3) == 0: return V_EVT
        if memcmp(p, b"SUB", 3) == 0: return V_SUB
        if memcmp(p, b"ERR", 3) == 0: return V_ERR
        if memcmp(p, b"BYE", 3) == 0: return V_BYE
    elif n == 4:
        if memcmp(p, b"PING", 4) == 0: return V_PING
        if memcmp(p, b"PONG", 4) == 0: return V_PONG
    elif n == 5:
        if memcmp(p, b"HELLO", 5) == 0: return V_HELLO
        if memcmp(p, b"UNSUB", 5) == 0: return V_UNSUB
    return None


cdef class FrameDecoder:
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
    # Bytes are parsed where they arrived (``_chunk``, no copy) until a frame
    # straddles two reads; only then is the remainder moved into ``_buf``.
    cdef bytes _chunk
    cdef bytearray _buf
    cdef bint _owned
    cdef Py_ssize_t _pos
    cdef unsigned long long _max
    cdef readonly bint relay
    cdef object _error

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD, bint relay=False):
        if not 0 <= max_payload <= MAX_LEN_FIELD:
            raise ValueError(f"max_payload must be within 0..{MAX_LEN_FIELD}")
        self._max = max_payload
        self.relay = relay
        self._chunk = EMPTY
        self._owned = False
        self._pos = 0

    @property
    def max_payload(self):
        return self._max

    @property
    def buffered(self):
        """Bytes received but not yet part of a whole frame."""
        return self._size() - self._pos

    cdef inline Py_ssize_t _size(self):
        return PyByteArray_GET_SIZE(self._buf) if self._owned else PyBytes_GET_SIZE(self._chunk)

    def feed(self, data):
        if self._error is not None:
            raise _again(self._error)
        if self._pos >= self._size():
            self._owned = False
            self._buf = None
            self._chunk = data if type(data) is bytes else bytes(data)
        else:
            if not self._owned:
                self._buf = bytearray(self._chunk[self._pos:])
                self._chunk = EMPTY
                self._owned = True
            elif self._pos:
                del self._buf[:self._pos]
            self._buf += data
        self._pos = 0
        return self

    def __iter__(self):
        return self

    def __next__(self):
        frame = self._next()
        if frame is None:
            raise StopIteration
        return frame

    cdef object _next(self):
        """The next whole frame, or None until more bytes arrive."""
        if self._error is not None:
            raise _again(self._error)
        cdef const char* base = PyByteArray_AS_STRING(self._buf) if self._owned else PyBytes_AS_STRING(self._chunk)
        cdef Py_ssize_t pos = self._pos, end = self._size(), avail, i, sp = -1, start
        cdef const unsigned char* line = <const unsigned char*>base + pos
        cdef const unsigned char* nl
        cdef unsigned long long size
        cdef str verb
        cdef object arg
        cdef bytes body
        cdef char* out
        if pos >= end:
            self._reset()
            return None
        avail = end - pos
        if avail > MAX_LINE:
            avail = MAX_LINE
        nl = <const unsigned char*>memchr(line, 0x0A, avail)
        if nl is not NULL:
            avail = nl - line
        for i in range(avail):
            if line[i] > 0x7F:
                self._fail(errors.line_not_ascii(i, line[i]))
            if line[i] == 0x20 and sp < 0:
                sp = i
        if nl is NULL:
            if end - pos >= MAX_LINE:
                self._fail(errors.line_too_long())
            return None  # incomplete: the frame at _pos waits for more bytes
        verb = _verb(<const char*>line, avail if sp < 0 else sp)
        if verb is None:
            self._fail(errors.unknown_verb(PyBytes_FromStringAndSize(<const char*>line, avail if sp < 0 else sp)))
        start = pos + avail + 1 + LEN_SIZE
        if start > end:
            return None  # incomplete: the frame at _pos waits for more bytes
        nl += 1
        size = (<unsigned long long>nl[0] << 24) | (nl[1] << 16) | (nl[2] << 8) | nl[3]
        if size > self._max:
            self._fail(errors.payload_too_large(size, self._max))
        if start + <Py_ssize_t>size > end:
            return None  # incomplete: the frame at _pos waits for more bytes
        self._pos = start + size
        arg = None if sp < 0 else PyUnicode_DecodeASCII(<const char*>line + sp + 1, avail - sp - 1, NULL)
        if verb is V_PUB and self.relay:
            body = PyBytes_FromStringAndSize(NULL, self._pos - pos)
            out = PyBytes_AS_STRING(body)
            memcpy(out, b"EVT", 3)
            memcpy(out + 3, line + 3, self._pos - pos - 3)
        elif size:
            body = PyBytes_FromStringAndSize(base + start, size)
        else:
            body = EMPTY
        return (verb, arg, body)

    cdef _reset(self):
        self._chunk = EMPTY
        self._buf = None
        self._owned = False
        self._pos = 0

    cdef _fail(self, error):
        self._error = error
        raise _again(error)


cdef _again(error):
    return errors.FrameError(error.code, str(error))


def encode(str verb not None, arg=None, body=b""):
    """One frame: ``VERB [SP ARG] LF LEN BODY`` (SPEC §3)."""
    cdef Py_buffer view
    cdef Py_ssize_t alen = 0, llen, i, total
    cdef const unsigned char* ap = NULL
    cdef bytes frame
    cdef unsigned char* out
    cdef unsigned long long size
    if verb not in VERBS:
        raise errors.unknown_verb(verb.encode("ascii", "replace"))
    if arg is not None:
        if type(arg) is not str:
            raise TypeError(f"arg must be str or None, not {type(arg).__name__}")
        if not PyUnicode_IS_COMPACT_ASCII(arg):
            raise errors.bad_line("argument is not ASCII")
        alen = PyUnicode_GET_LENGTH(arg)
        ap = <const unsigned char*>PyUnicode_DATA(arg)
        if memchr(ap, 0x0A, alen) is not NULL:
            raise errors.bad_line("argument contains a LF")
        llen = len(verb) + 1 + alen + 1
        if llen > MAX_LINE:
            raise errors.bad_line(f"line is longer than {MAX_LINE} bytes")
    else:
        llen = len(verb) + 1
    PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
    try:
        size = view.len
        if size > MAX_LEN_FIELD:
            raise errors.payload_too_large(size, MAX_LEN_FIELD)
        total = llen + LEN_SIZE + view.len
        frame = PyBytes_FromStringAndSize(NULL, total)
        out = <unsigned char*>PyBytes_AS_STRING(frame)
        memcpy(out, PyUnicode_DATA(verb), len(verb))
        i = len(verb)
        if ap is not NULL:
            out[i] = 0x20
            memcpy(out + i + 1, ap, alen)
            i += 1 + alen
        out[i] = 0x0A
        out[i + 1] = (size >> 24) & 0xFF
        out[i + 2] = (size >> 16) & 0xFF
        out[i + 3] = (size >> 8) & 0xFF
        out[i + 4] = size & 0xFF
        memcpy(out + i + 5, view.buf, view.len)
        return frame
    finally:
        PyBuffer_Release(&view)


# ----------------------------------------------------------- client delivery

cdef object _UNDECODED = object()
cdef object _loads = orjson.loads
cdef object _get_running_loop = asyncio.get_running_loop
cdef object _deque = collections.deque
cdef enum:  # EventQueue.state
    S_NEW = 0
    S_ACTIVE = 1
    S_CLOSED = 2
NEW, ACTIVE, CLOSED = S_NEW, S_ACTIVE, S_CLOSED  # as Python sees them


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

    def __init__(self, reason, lost=None):
        self.reason = reason
        self.lost = lost

    def __repr__(self):
        return f"Gap({self.reason!r}, lost={self.lost})"


cdef class EventQueue:
    """The bounded, drop-oldest queue behind a Subscription, and its async iteration.

    ``state`` is NEW, ACTIVE or CLOSED (the Subscription moves it); iteration
    waits while ACTIVE and ends once CLOSED and empty.
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
            raise ValueError("maxsize must be >= 1")
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
                if self.state == S_NEW:
                    raise BusError("enter the subscription first: async with bus.subscribe(pattern) as sub")
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


# ------------------------------------------------------------ broker routing

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
    ``pressure`` says one of them passed its stall mark while still being
    drained: the publisher of that read may be held a moment.
    """
    cdef list boxes
    cdef public bint pressure

    def __init__(self):
        self.boxes = []

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
    it is listed already (an outbox belongs to one FlushSet, its broker's). Over ``limit`` bytes the oldest EVT frames are
    dropped and counted; control frames (PONG, ERR, BYE) never are: they move
    to ``held`` and go out first. Past ``stall_at`` bytes (0: never) it reports
    pressure to the FlushSet, once per ``take``: a reader that is behind but
    reading may have its publishers held, one that never reads asks once.
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
    cdef bint progress  # taken from since it last reported pressure

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
        if self.size > self.stall_at and self.progress and self.stall_at:
            self.progress = False
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
    frame is left or, with ``limit``, once that many PUBs were routed."""
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
        if limit:
            limit -= 1
            if not limit:
                return None
