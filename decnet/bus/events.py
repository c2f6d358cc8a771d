"""Publishing helpers for topology events: the topic, the payload and its
``ts`` built in one place, so no worker hand-writes them (docs/web.md has the
schemas).

    from decnet.bus import events, get_bus
    bus = get_bus(name="mutator")
    await events.mutation(bus, "t1", "m-42", "applying", op="attach_decky")
    await events.status_changed(bus, "t1", "active", previous="deploying")
    await events.version_bumped(bus, "t1", 8)

Each raises ``ValueError``/``TypeError`` for a caller's mistake (an unknown
state or op, an id that is not a topic token); like ``publish``, it never
raises because the broker is down.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Literal, Optional, TypedDict, Union, get_args

from . import topics
from .base import Bus

MutationState = Literal["enqueued", "applying", "applied", "failed"]
MutationOp = Literal["add_lan", "remove_lan", "attach_decky", "detach_decky", "remove_decky", "update_decky",
                     "update_lan"]
#: The states of a mutation, in the order it goes through them (``failed`` ends it instead of ``applied``).
STATES: tuple[str, ...] = get_args(MutationState)
#: The operations a mutation may carry.
OPS: tuple[str, ...] = get_args(MutationOp)
Id = Union[str, int, uuid.UUID]


class MutationPayload(TypedDict):
    """``topology.{id}.mutation.{state}``: one mutation changed state."""

    topology_id: str
    mutation_id: str
    state: MutationState
    op: MutationOp
    error: Optional[str]  # why it failed; None unless state is "failed"
    ts: str  # RFC 3339 UTC with milliseconds: when the change happened


class StatusPayload(TypedDict):
    """``topology.{id}.status``: the topology's overall status changed."""

    topology_id: str
    status: str
    previous: Optional[str]
    ts: str


class VersionPayload(TypedDict):
    """``topology.{id}.version``: the topology's version was bumped."""

    topology_id: str
    version: int
    previous: Optional[int]
    ts: str


def timestamp(when: Optional[datetime.datetime] = None) -> str:
    """``when`` (default: now) as RFC 3339 UTC with milliseconds, e.g.
    ``2026-11-29T16:00:00.123Z``; a naive datetime is taken as UTC."""
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    when = when.astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _text(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise TypeError(f"{what} must be str, int or UUID, not {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError(f"{what} must not be empty")
    return text


def mutation_payload(topology_id: Id, mutation_id: Id, state: str, *, op: str, error: Optional[str] = None,
                     at: Optional[datetime.datetime] = None) -> tuple[str, MutationPayload]:
    """The topic and payload of a mutation's change of state (what ``mutation`` publishes)."""
    if state not in STATES:
        raise ValueError(f"mutation state {state!r} is not one of {', '.join(STATES)}")
    if op not in OPS:
        raise ValueError(f"mutation op {op!r} is not one of {', '.join(OPS)}")
    if error is not None and state != "failed":
        raise ValueError(f"a mutation in state {state!r} has no error (only 'failed' does)")
    if error is not None and not isinstance(error, str):
        raise TypeError(f"error must be str or None, not {type(error).__name__}")
    topic = topics.topology_mutation(topology_id, state)
    payload: MutationPayload = {"topology_id": str(topology_id), "mutation_id": _text(mutation_id, "mutation id"),
                                "state": state, "op": op, "error": error, "ts": timestamp(at)}  # type: ignore[typeddict-item]
    return topic, payload


def status_payload(topology_id: Id, status: str, *, previous: Optional[str] = None,
                   at: Optional[datetime.datetime] = None) -> tuple[str, StatusPayload]:
    """The topic and payload of a change of status (what ``status_changed`` publishes)."""
    for what, value in (("status", status), ("previous status", previous)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{what} must be a non-empty str, not {value!r}")
    topic = topics.topology_status(topology_id)
    return topic, {"topology_id": str(topology_id), "status": status, "previous": previous, "ts": timestamp(at)}


def version_payload(topology_id: Id, version: int, *, previous: Optional[int] = None,
                    at: Optional[datetime.datetime] = None) -> tuple[str, VersionPayload]:
    """The topic and payload of a version bump (what ``version_bumped`` publishes)."""
    for what, value in (("version", version), ("previous version", previous)):
        if value is None and what == "previous version":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what} must be an int >= 0, not {value!r}")
    if previous is not None and previous >= version:
        raise ValueError(f"version {version} is not a bump of {previous}")
    topic = topics.topology_version(topology_id)
    return topic, {"topology_id": str(topology_id), "version": version, "previous": previous, "ts": timestamp(at)}


async def mutation(bus: Bus, topology_id: Id, mutation_id: Id, state: str, *, op: str, error: Optional[str] = None,
                   at: Optional[datetime.datetime] = None) -> MutationPayload:
    """Publish that mutation ``mutation_id`` of ``topology_id`` is now in ``state``
    (enqueued, applying, applied, failed) for operation ``op``; ``error`` says
    why it failed. ``at``: when it happened (default: now). Returns the payload."""
    topic, payload = mutation_payload(topology_id, mutation_id, state, op=op, error=error, at=at)
    await bus.publish(topic, payload)
    return payload


async def status_changed(bus: Bus, topology_id: Id, status: str, *, previous: Optional[str] = None,
                         at: Optional[datetime.datetime] = None) -> StatusPayload:
    """Publish that ``topology_id``'s status is now ``status`` (from ``previous``). Returns the payload."""
    topic, payload = status_payload(topology_id, status, previous=previous, at=at)
    await bus.publish(topic, payload)
    return payload


async def version_bumped(bus: Bus, topology_id: Id, version: int, *, previous: Optional[int] = None,
                         at: Optional[datetime.datetime] = None) -> VersionPayload:
    """Publish that ``topology_id`` is now at ``version`` (from ``previous``). Returns the payload."""
    topic, payload = version_payload(topology_id, version, previous=previous, at=at)
    await bus.publish(topic, payload)
    return payload
