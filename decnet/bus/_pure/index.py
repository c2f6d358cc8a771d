"""SubscriptionIndex: which subscribers' patterns match a topic (a token trie
with a per-topic result cache).

The pure-Python twin of ``_index.pxi``: same names, same answers, same errors.
"""

from __future__ import annotations

from typing import Hashable, Optional

from .. import constants as C
from .._shared import BAD_CACHE_SIZE
from .topics import _match_tokens, check_pattern


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
            raise ValueError(BAD_CACHE_SIZE)
        self._root = _Node()
        self._count = 0
        self._cache: dict = {}
        # The cached topics in order of arrival, oldest at _head once the
        # cache is full (a ring), so the oldest is found without iterating the
        # dict: next(iter(cache)) scans the holes every deletion leaves at its
        # front, hundreds of them per miss once every lookup misses. Always
        # the same keys as _cache.
        self._ring: list = []
        self._head = 0
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
            ring = self._ring
            if len(cache) >= self.cache_size and ring:
                del cache[ring[self._head]]
                ring[self._head] = topic
                self._head = (self._head + 1) % len(ring)
            else:
                ring.append(topic)
            cache[topic] = found
        return found

    def _invalidate(self, ptokens: list) -> None:
        cache = self._cache
        if cache:
            stale = [t for t in cache if _match_tokens(ptokens, t)]
            if stale:
                for topic in stale:
                    del cache[topic]
                self._ring = list(cache)  # a dict keeps insertion order: oldest first
                self._head = 0


def _child(node: _Node, token: str) -> _Node:
    if token == "*":
        if node.star is None:
            node.star = _Node()
        return node.star
    child = node.children.get(token)
    if child is None:
        child = node.children[token] = _Node()
    return child

