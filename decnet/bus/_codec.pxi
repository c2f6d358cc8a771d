# The frame codec (docs/protocol.md §3): FrameDecoder, incremental and copy-free until a
# frame straddles two reads, and encode. Included by _fastmatch.pyx; its twin
# is _pure/codec.py.

cdef Py_ssize_t MAX_LINE = C.MAX_LINE
cdef Py_ssize_t LEN_SIZE = C.LEN_SIZE  # must be 4: the decoder and encode spell those bytes out
cdef unsigned long long MAX_LEN_FIELD = C.MAX_LEN_FIELD
cdef object DEFAULT_MAX_PAYLOAD = C.DEFAULT_MAX_PAYLOAD
cdef frozenset VERBS = C.VERBS
cdef bytes EMPTY = b""


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
            raise ValueError(BAD_MAX_PAYLOAD)
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
            raise errors.again(self._error)
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
            raise errors.again(self._error)
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
        raise errors.again(error)


def encode(str verb not None, arg=None, body=b""):
    """One frame: ``VERB [SP ARG] LF LEN BODY`` (docs/protocol.md §3)."""
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
            raise not_str_or_none("arg", arg)
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
