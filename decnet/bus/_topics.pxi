# Topic and pattern grammar (docs/protocol.md §2): the validity checks and ``matches``.
# Included by _fastmatch.pyx; its twin is _pure/topics.py.

cdef Py_ssize_t MAX_TOPIC = C.MAX_TOPIC
cdef str E_BAD_TOPIC = C.E_BAD_TOPIC, E_BAD_PATTERN = C.E_BAD_PATTERN


cdef bint _valid(str s, bint pattern):
    """Single pass over the bytes: docs/protocol.md §2 for a topic or, with ``pattern``, a pattern."""
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
        raise not_str("topic", topic)
    if _valid(<str>topic, False):
        return <str>topic
    raise TopicError(explain(topic, False), E_BAD_TOPIC)


cpdef str check_pattern(pattern):
    """Return ``pattern`` if it is a valid pattern, else raise TopicError saying why."""
    if type(pattern) is not str:
        raise not_str("pattern", pattern)
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
    """True if ``topic`` matches ``pattern`` (docs/protocol.md §2); both are validated."""
    check_pattern(pattern)
    check_topic(topic)
    return _match_tokens((<str>pattern).split("."), <str>topic)
