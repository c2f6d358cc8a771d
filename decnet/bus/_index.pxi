# SubscriptionIndex: which subscribers' patterns match a topic (a token trie
# with a per-topic result cache). Included by _fastmatch.pyx; its twin is
# _pure/index.py.

cdef Py_ssize_t DEFAULT_CACHE_SIZE = C.DEFAULT_CACHE_SIZE


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
    # The cached topics in order of arrival, oldest at _head once the cache
    # is full (a ring), so the oldest is found without iterating the dict:
    # next(iter(cache)) scans the holes every deletion leaves at its front,
    # hundreds of them per miss once every lookup misses. Always the same
    # keys as _cache.
    cdef list _ring
    cdef Py_ssize_t _head

    def __init__(self, Py_ssize_t cache_size=DEFAULT_CACHE_SIZE):
        if cache_size < 0:
            raise ValueError(BAD_CACHE_SIZE)
        self._root = _Node()
        self._count = 0
        self._cache = {}
        self._ring = []
        self._head = 0
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
            self._store(topic, found)
        return found

    cdef int _store(self, str topic, tuple found) except -1:
        cdef list ring = self._ring
        cdef Py_ssize_t n = len(ring)
        if len(self._cache) >= self.cache_size and n:
            del self._cache[ring[self._head]]
            ring[self._head] = topic
            self._head = (self._head + 1) % n
        else:
            ring.append(topic)
        PyDict_SetItem(self._cache, topic, found)
        return 0

    cdef _invalidate(self, list ptokens):
        cdef list stale
        if self._cache:
            stale = [t for t in self._cache if _match_tokens(ptokens, <str>t)]
            if stale:
                for topic in stale:
                    del self._cache[topic]
                self._ring = list(self._cache)  # a dict keeps insertion order: oldest first
                self._head = 0
