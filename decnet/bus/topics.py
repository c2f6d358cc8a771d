"""Topic and pattern grammar (docs/protocol.md §2) and builders for DECNET's locked hierarchy.

Use the builders rather than f-strings: they refuse an id that would change the
shape of the topic (``decky_state("a.b")`` would otherwise publish on
``decky.a.b.state``, which no ``decky.*.state`` subscriber sees).
"""

from __future__ import annotations

import uuid

from ._compat import check_pattern, check_topic, matches  # noqa: F401  (the grammar, re-exported)
from ._grammar import explain
from .constants import E_BAD_TOPIC
from .errors import TopicError

ATTACKER_OBSERVED = "attacker.observed"
SYSTEM_LOG = "system.log"
SYSTEM_BUS_HEALTH = "system.bus.health"
#: Every decky's state changes.
ALL_DECKY_STATES = "decky.*.state"


def token(value: str | int | uuid.UUID, what: str = "id") -> str:
    """``value`` as one literal topic token, or TopicError if it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise TypeError(f"{what} must be str, int or UUID, not {type(value).__name__}")
    text = str(value)
    try:
        check_topic(text)
    except TopicError:
        raise TopicError(f"{what} {text!r} cannot be a topic token: {explain(text, False)}", E_BAD_TOPIC) from None
    if "." in text:
        raise TopicError(f"{what} {text!r} cannot be a topic token: it contains '.'", E_BAD_TOPIC)
    return text


def topology_mutation(topology_id: str | int | uuid.UUID, state: str) -> str:
    """``topology.{id}.mutation.{state}``: a mutation of a topology changed state."""
    return f"topology.{token(topology_id, 'topology id')}.mutation.{token(state, 'mutation state')}"


def topology_status(topology_id: str | int | uuid.UUID) -> str:
    """``topology.{id}.status``: a topology's overall status changed."""
    return f"topology.{token(topology_id, 'topology id')}.status"


def topology_version(topology_id: str | int | uuid.UUID) -> str:
    """``topology.{id}.version``: a topology's version was bumped."""
    return f"topology.{token(topology_id, 'topology id')}.version"


def topology_all(topology_id: str | int | uuid.UUID) -> str:
    """``topology.{id}.>``: the pattern for everything about one topology.

    ``topology.{id}.*`` would miss the mutation events, which are one token deeper.
    """
    return f"topology.{token(topology_id, 'topology id')}.>"


def decky_state(decky_id: str | int | uuid.UUID) -> str:
    """``decky.{id}.state``: a decky's state changed."""
    return f"decky.{token(decky_id, 'decky id')}.state"


def decky_traffic(decky_id: str | int | uuid.UUID) -> str:
    """``decky.{id}.traffic``: traffic was seen on a decky."""
    return f"decky.{token(decky_id, 'decky id')}.traffic"
