"""What crosses a bridge and under which name: patterns, subjects and the loop guards.

Pure and synchronous, so every rule is tested apart from the I/O: local topic
``T`` is NATS subject ``<prefix>.T``; overlapping patterns are merged so an
event crosses once; ``system.bus.*`` never leaves its host; an import that
this bridge exported, that is not a decnet topic, or that a second overlapping
NATS subscription delivers again, is told apart here.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from .. import constants as C
from ..errors import TopicError
from ..topics import check_pattern, check_topic, matches, token

#: The header naming the bridge that exported a message (its ``--name``).
ORIGIN = "Decnet-Origin"
#: ``<epoch>.<n>``: the exporting bridge's run (random per start) and the
#: message's number in that run; lets an importer drop the second copy NATS
#: delivers to two overlapping subscriptions.
SEQ = "Decnet-Seq"
#: Never exported: the broker's own topics describe one host only.
NEVER_EXPORTED = C.RESERVED_PREFIX
DEFAULT_PREFIX = "decnet"
#: Origins whose last sequence number is remembered (a fleet's bridges).
MAX_ORIGINS = 65_536


#: What a consumer of imported topics subscribes to, to learn of every bridge's losses.
ALL_BRIDGE_GAPS = "system.bridge.*.gap"


def health_topic(name: str) -> str:
    """``system.bridge.{name}.health``: bridge ``name``'s heartbeat."""
    return f"system.bridge.{token(name, 'bridge name')}.health"


def gap_topic(name: str) -> str:
    """``system.bridge.{name}.gap``: imported events may have been lost (docs/federation.md)."""
    return f"system.bridge.{token(name, 'bridge name')}.gap"


def covers(general: str, specific: str) -> bool:
    """True when every topic ``specific`` matches is matched by ``general`` too."""
    g, s = general.split("."), specific.split(".")
    for i, token_g in enumerate(g):
        if token_g == ">":
            return i < len(s)  # s has a token here, and each of its tokens matches one or more
        if i >= len(s) or s[i] == ">":
            return False
        if token_g != "*" and token_g != s[i]:
            return False
    return len(g) == len(s)


def overlaps(a: str, b: str) -> bool:
    """True when some topic matches both patterns."""
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        if i >= len(ta) or i >= len(tb):
            return False
        x, y = ta[i], tb[i]
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return True


def merge(patterns: Iterable[str]) -> tuple[str, ...]:
    """The patterns without duplicates and without those another one covers,
    in the order given: one subscription each is then enough."""
    unique = list(dict.fromkeys(patterns))
    kept = []
    for i, p in enumerate(unique):
        if not any(covers(q, p) for j, q in enumerate(unique) if j != i and (not covers(p, q) or j < i)):
            kept.append(p)
    return tuple(kept)


class MappingError(ValueError):
    """A prefix, name or pattern the bridge cannot use; the message says why."""


class Mapping:
    """The names on both sides of one bridge, and what may cross.

    ``exports`` and ``imports`` are the patterns given (merged); nothing
    crosses without one. Raises MappingError for a bad prefix, name or pattern.
    """

    def __init__(self, name: str, exports: Iterable[str], imports: Iterable[str], prefix: str = DEFAULT_PREFIX) -> None:
        try:
            self.name = token(name, "bridge name")
        except (TopicError, TypeError) as error:
            raise MappingError(f"--name: {error}") from None
        try:
            check_topic(prefix)
        except TopicError as error:
            raise MappingError(f"--prefix {prefix!r} is not a topic: {error}") from None
        for option, given in (("--export", exports), ("--import", imports)):
            for pattern in given:
                try:
                    check_pattern(pattern)
                except TopicError as error:
                    raise MappingError(f"{option} {pattern!r}: {error}") from None
        exports, imports = list(exports), list(imports)
        for pattern in exports:
            if covers(NEVER_EXPORTED + ">", pattern):
                raise MappingError(f"--export {pattern!r}: {NEVER_EXPORTED}* is never exported (one host's broker only)")
        self.prefix = prefix
        self.exports = merge(exports)
        self.imports = merge(imports)
        self._dot = prefix + "."
        self._strip = len(self._dot)
        #: The NATS subjects to subscribe, one per merged import pattern.
        self.import_subjects = tuple(self._dot + p for p in self.imports)
        #: Merged import patterns can still overlap (``a.*.c``, ``a.b.*``): then
        #: NATS delivers a message once per subscription, and Dedupe drops the rest.
        self.overlapping = any(overlaps(a, b) for i, a in enumerate(self.imports) for b in self.imports[i + 1:])

    def subject(self, topic: str) -> str:
        """The NATS subject of local ``topic``."""
        return self._dot + topic

    def exported(self, topic: str) -> bool:
        """Whether an event the export subscription received may cross."""
        return not topic.startswith(NEVER_EXPORTED)

    def exports_topic(self, topic: str) -> bool:
        """Whether ``topic`` (the bridge's own health or gap) matches an export pattern."""
        return self.exported(topic) and any(matches(p, topic) for p in self.exports)

    def topic(self, subject: str) -> Optional[str]:
        """The local topic of NATS ``subject``; None when it is not under the
        prefix, not a decnet topic (a token ``a*b``, a non-ASCII byte, over
        255 bytes) or one that only the local broker may publish."""
        if not subject.startswith(self._dot):
            return None
        topic = subject[self._strip:]
        try:
            check_topic(topic)
        except TopicError:
            return None
        if topic.startswith(NEVER_EXPORTED):
            return None
        return topic


def new_epoch() -> str:
    """A random label for one run of a bridge (its sequence numbers restart)."""
    return os.urandom(8).hex()


class Dedupe:
    """Drops the second copy of a message that two overlapping import
    subscriptions both received.

    NATS writes every copy of one message to a connection before the next
    message of the same publisher, and the bridge reads its subscriptions as
    one stream in that order: so a copy is a message whose ``Decnet-Seq`` is
    not above the last one seen from its origin in the same run.
    """

    def __init__(self, max_origins: int = MAX_ORIGINS) -> None:
        self._last: dict[str, tuple[str, int]] = {}
        self.max_origins = max_origins

    def duplicate(self, origin: str, stamp: Optional[str]) -> bool:
        """True for a copy already seen; records the message otherwise."""
        if not stamp:
            return False
        epoch, _, number = stamp.rpartition(".")
        try:
            n = int(number)
        except ValueError:
            return False
        last = self._last.get(origin)
        if last is not None and last[0] == epoch and n <= last[1]:
            return True
        if last is None and len(self._last) >= self.max_origins:
            del self._last[next(iter(self._last))]
        self._last[origin] = (epoch, n)
        return False
