"""Why a topic or pattern is invalid, in words (docs/protocol.md §2).

Both implementations check validity on their own fast path and call
``explain`` only once they know the string is bad, so their messages agree.
"""

from __future__ import annotations

from .constants import MAX_TOPIC


def explain(value: str, pattern: bool) -> str:
    """Return the first rule ``value`` breaks, scanning left to right."""
    kind = "pattern" if pattern else "topic"
    if not value:
        return f"{kind} is empty"
    if len(value) > MAX_TOPIC:
        return f"{kind} {value[:32]!r}... is {len(value)} characters long; the limit is {MAX_TOPIC}"
    for offset, ch in enumerate(value):
        if not "!" <= ch <= "~":
            return f"character {ch!r} at offset {offset} of {kind} {value!r} is not printable ASCII"
    tokens = value.split(".")
    for number, token in enumerate(tokens, 1):
        if not token:
            return f"token {number} of {kind} {value!r} is empty"
        if "*" not in token and ">" not in token:
            continue
        if token not in ("*", ">"):
            return f"token {number} of {kind} {value!r} mixes a wildcard with other characters"
        if not pattern:
            return f"token {number} of topic {value!r} is the wildcard {token!r}; wildcards belong in patterns"
        if token == ">" and number != len(tokens):
            return f"token {number} of pattern {value!r} is '>', which may only be the last token"
    raise AssertionError(f"explain() called on a valid {kind}: {value!r}")
