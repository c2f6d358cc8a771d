"""Topic and pattern grammar (docs/protocol.md §2): the validity checks and ``matches``.

The pure-Python twin of ``_topics.pxi``: same names, same answers, same errors.
"""

from __future__ import annotations

import re

from .. import constants as C
from .._grammar import explain
from .._shared import not_str
from ..errors import TopicError

# A literal token: printable ASCII except '.', '*' and '>'.
_TOKEN = r"[!-)+-\-/-=?-~]+"
_TOPIC_RE = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
_PATTERN_RE = re.compile(rf"(?:(?:{_TOKEN}|\*)(?:\.(?:{_TOKEN}|\*))*(?:\.>)?|>)")


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic, else raise TopicError saying why."""
    if type(topic) is not str:
        raise not_str("topic", topic)
    if len(topic) <= C.MAX_TOPIC and _TOPIC_RE.fullmatch(topic):
        return topic
    raise TopicError(explain(topic, False), C.E_BAD_TOPIC)


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid pattern, else raise TopicError saying why."""
    if type(pattern) is not str:
        raise not_str("pattern", pattern)
    if len(pattern) <= C.MAX_TOPIC and _PATTERN_RE.fullmatch(pattern):
        return pattern
    raise TopicError(explain(pattern, True), C.E_BAD_PATTERN)


def _match_tokens(ptokens: list, topic: str) -> bool:
    ttokens = topic.split(".")
    last = len(ttokens)
    for i, token in enumerate(ptokens):
        if token == ">":
            return last > i
        if i >= last or (token != "*" and token != ttokens[i]):
            return False
    return len(ptokens) == last


def matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` matches ``pattern`` (docs/protocol.md §2); both are validated."""
    check_pattern(pattern)
    check_topic(topic)
    return _match_tokens(pattern.split("."), topic)

