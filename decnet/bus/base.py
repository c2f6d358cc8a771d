"""The interface every bus offers: ``Bus``, ``Subscription``, ``Event`` and ``Gap``.

``UnixBus`` (the real client), ``FakeBus`` and ``NullBus`` all derive from
``Bus``, so a worker written against one runs against the others. A bus runs
on one hot-path implementation (``impl``, the selected one by default), and its
Subscriptions queue events in that implementation's ``EventQueue``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Union

import orjson

from . import _compat
from . import constants as C
from ._compat import ACTIVE, CLOSED, NEW, Event, Gap
from .errors import BusError, PayloadTooLarge, TopicError
from .topics import check_pattern, check_topic

Item = Union[Event, Gap]


class BaseSubscription:
    """Events matching one pattern (or any of several): an async context manager
    and an async iterator.

    ``async with bus.subscribe("decky.*.state") as sub: async for evt in sub: ...``
    Once inside ``async with``, the broker has the subscription. Iteration ends
    when the subscription or its bus is closed. The queue holds ``maxsize``
    events; when full, the oldest are dropped (``dropped`` counts them) and a
    ``Gap`` tells the reader where, unless ``gaps=False``. With several
    patterns (``patterns``; ``pattern`` is the first), an event matching more
    than one is yielded once, and events keep their order across patterns.

    This is the Python half; the queue and the iteration are the hot path's
    ``EventQueue``, and each implementation has its class joining the two
    (``SubscriptionPy``, ``SubscriptionC``): ``isinstance(sub, BaseSubscription)``
    holds for both, ``Subscription`` is the selected implementation's.
    """

    def __init__(self, bus: "Bus", pattern: str, maxsize: int = C.DEFAULT_SUBSCRIPTION_QUEUE, gaps: bool = True,
                 more: tuple = ()) -> None:
        patterns = tuple(dict.fromkeys((pattern, *more)))
        for each in patterns:
            check_pattern(each)
        super().__init__(maxsize, gaps)
        self.pattern = pattern
        self.patterns = patterns
        self._bus = bus
        self._missed: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    def __aiter__(self) -> "BaseSubscription":
        if self.state == NEW:
            raise BusError("enter the subscription first: async with bus.subscribe(pattern) as sub")
        return self

    @property
    def pending_gap(self) -> Optional[str]:
        """The reason of the Gap this subscription owes its reader once it is
        live again (see ``missed``), or None."""
        return self._missed

    def missed(self, reason: str) -> None:
        """The bus's word that this subscription may miss events from now until
        the bus calls ``live_again``. The first reason stands, except that
        ``"connect"`` (the broker never had this subscription) stands over any."""
        if self._missed is None or reason == "connect":
            self._missed = reason

    def live_again(self) -> None:
        """The bus's word that the broker has this subscription again: one that
        may have missed events gets its Gap now, so a resync done on reading it
        misses nothing."""
        reason, self._missed = self._missed, None
        if reason is not None and self.state == ACTIVE:
            self.put_gap(reason)

    async def __aenter__(self) -> "BaseSubscription":
        if self.state != NEW:
            raise BusError(f"subscription to {self.pattern!r} was already entered")
        self.state = ACTIVE
        try:
            await self._bus._attach(self)
        except BaseException:
            self.state = CLOSED
            await self._bus._detach(self)  # never suspends: safe even when cancelled
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop receiving; a reader blocked in ``async for`` ends."""
        if self.state == ACTIVE:
            self.state = CLOSED
            self.wake()
            await self._bus._detach(self)
        self.state = CLOSED

    def __repr__(self) -> str:
        state = ("new", "active", "closed")[self.state]
        return f"<Subscription {self.pattern!r} {state} queued={self.queued} dropped={self.dropped}>"


_twins = _compat.implementations()


class SubscriptionPy(BaseSubscription, _twins["pure"].EventQueue):
    """A Subscription whose queue is the pure twin's ``EventQueue``."""


_SUBSCRIPTIONS = {_twins["pure"]: SubscriptionPy}

if "compiled" in _twins:

    class SubscriptionC(BaseSubscription, _twins["compiled"].EventQueue):
        """A Subscription whose queue is the compiled ``EventQueue``."""

    _SUBSCRIPTIONS[_twins["compiled"]] = SubscriptionC

#: The Subscription class of the selected implementation, ``_compat.impl``.
Subscription = _SUBSCRIPTIONS[_compat.impl]


def subscription_class(impl: ModuleType) -> type:
    """The Subscription class whose queue is ``impl``'s ``EventQueue``."""
    cls = _SUBSCRIPTIONS.get(impl)
    if cls is None:
        raise ValueError(f"{impl!r} is not one of the hot-path implementations {sorted(_twins)}")
    return cls


def check_publish_topic(topic: str) -> None:
    """What ``publish`` checks of a topic: the grammar (TopicError ``bad_topic``),
    and that it is not the broker's own (TopicError ``reserved_topic``)."""
    check_topic(topic)
    if topic.startswith(C.RESERVED_PREFIX):
        raise TopicError(f"topic {topic!r} is reserved for the broker ({C.RESERVED_PREFIX}*)", C.E_RESERVED_TOPIC)


def check_size(body: bytes, max_payload: int) -> None:
    """``PayloadTooLarge`` if ``body`` is over ``max_payload`` bytes."""
    if len(body) > max_payload:
        raise PayloadTooLarge(f"payload of {len(body)} bytes exceeds the broker's limit of {max_payload} bytes")


def encode_event(topic: str, payload: Any, max_payload: int) -> bytes:
    """The body ``publish`` would send for ``payload`` on ``topic``, after every
    check of the caller's mistakes: the topic (``check_publish_topic``), a payload
    orjson cannot encode (TypeError), its size (``PayloadTooLarge``)."""
    check_publish_topic(topic)
    body = orjson.dumps(payload)
    check_size(body, max_payload)
    return body


class Bus:
    """What every bus offers. Subclasses provide ``publish``, ``flush`` and the
    hooks ``_attach``/``_detach``; the local fan-out to Subscriptions is here.

    Every bus has the same public attributes and ``stats()`` keys, so code
    written against one runs against the others: ``name``, ``path``, the
    counters ``published``, ``dropped``, ``connects``, ``errors``,
    ``broker_dropped`` and ``last_error``, and ``connected``, ``server``,
    ``max_payload``. Where a bus has no broker the values say so: NullBus
    counts every event it was asked to publish as ``dropped`` (it reached no
    broker) and is never ``connected``; FakeBus counts what it delivered as
    ``published`` and is ``connected`` until closed; neither makes
    ``connects`` nor has a ``server``.

    ``impl`` is the hot-path implementation it runs on (a module of
    ``_compat.implementations()``; None for the selected one); ``name`` is what
    the broker logs for it; ``max_payload`` the largest payload ``publish``
    takes until a broker announces its own.
    """

    def __init__(self, impl: Optional[ModuleType] = None, *, name: Optional[str] = None,
                 max_payload: int = C.DEFAULT_MAX_PAYLOAD) -> None:
        self._impl: ModuleType = _compat.impl if impl is None else impl
        self._subscription_class = subscription_class(self._impl)
        self._local = self._impl.SubscriptionIndex()
        self._pattern_refs: dict[str, int] = {}
        self._subscriptions: set[BaseSubscription] = set()
        self._closed = False
        self._max_payload = max_payload
        #: The name the broker logs for this bus's connection (default: the program's name).
        self.name: str = name or os.path.basename(sys.argv[0] or "python")
        #: The broker's socket; None for a bus that has none (FakeBus, NullBus).
        self.path: Optional[Path] = None
        #: Events handed on: sent to the broker (UnixBus), delivered in-process (FakeBus).
        self.published = 0
        #: Events accepted by ``publish`` and then lost before reaching a broker:
        #: no broker, a stuck one, or the bus switched off (every NullBus publish).
        self.dropped = 0
        #: Connections made to a broker (more than one: reconnects).
        self.connects = 0
        #: ERR frames the broker sent this bus; the last one is ``last_error``.
        self.errors = 0
        self.last_error: Optional[dict] = None
        #: Events the broker dropped for this bus because it read too slowly.
        self.broker_dropped = 0

    @property
    def connected(self) -> bool:
        """True while ``publish`` hands events on (to a broker, or in-process)."""
        return False

    @property
    def server(self) -> Optional[dict]:
        """The broker's HELLO reply on the current connection, or None."""
        return None

    @property
    def max_payload(self) -> int:
        """The largest payload ``publish`` takes, in bytes of JSON: the broker's
        announced limit once one has answered, else the default."""
        return self._max_payload

    async def connect(self, timeout: float = 0.5) -> None:
        """Connect now rather than lazily; ``BusUnavailable`` (UnixBus) if no
        broker answers within ``timeout``. A bus without a broker returns at once."""
        return None

    async def publish(self, topic: str, payload: Any = None) -> None:
        """Publish ``payload`` (anything orjson encodes) on ``topic``.

        Raises TopicError/TypeError for a caller's mistake only; an event the
        bus cannot deliver is dropped and counted, never raised.
        """
        raise NotImplementedError

    async def publish_raw(self, topic: str, body: bytes) -> None:
        """Publish ``body``, the bytes of a JSON document (or empty), on
        ``topic`` as they are: no encoding, no copy.

        For relaying payloads that already were bus payloads (a bridge between
        buses): the topic and the size are checked as by ``publish``, the JSON
        is not (the broker never decodes a body either).
        """
        raise NotImplementedError

    def subscribe(self, pattern: str, *patterns: str, maxsize: int = C.DEFAULT_SUBSCRIPTION_QUEUE,
                  gaps: bool = True) -> BaseSubscription:
        """A Subscription to ``pattern`` (``*`` one token, ``>`` the rest); enter it with ``async with``.

        Further ``patterns`` make one Subscription of them all: an event that
        matches several is yielded once, in the order the broker sent it (a
        bridge needs both: no duplicates, one publisher's order kept)."""
        if self._closed:
            raise BusError("the bus is closed")
        return self._subscription_class(self, pattern, maxsize, gaps, patterns)

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Return once the broker has processed everything this bus sent before."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the bus: every Subscription ends."""
        self._closed = True
        for sub in list(self._subscriptions):
            await sub.close()

    async def __aenter__(self) -> "Bus":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    def stats(self) -> dict:
        """This bus's state and counters, the same keys on every bus:
        ``subscriptions``, ``connected``, ``published``, ``dropped``,
        ``connects``, ``errors``, ``received_dropped`` (dropped by this bus's
        full Subscription queues) and ``broker_dropped``."""
        return {
            "subscriptions": len(self._subscriptions),
            "connected": self.connected,
            "published": self.published,
            "dropped": self.dropped,
            "connects": self.connects,
            "errors": self.errors,
            "received_dropped": sum(s.dropped for s in self._subscriptions),
            "broker_dropped": self.broker_dropped,
        }

    # -- shared machinery

    def _encode(self, topic: str, payload: Any, max_payload: int) -> bytes:
        return encode_event(topic, payload, max_payload)

    def _check_raw(self, topic: str, body: bytes, max_payload: int) -> bytes:
        """``publish_raw``'s checks: the topic as for ``publish``, the body's type and size."""
        check_publish_topic(topic)
        if type(body) is not bytes:
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        check_size(body, max_payload)
        return body

    def _register(self, sub: BaseSubscription) -> list[str]:
        """Add ``sub`` to the local fan-out; its patterns that are new here."""
        if self._closed:
            raise BusError("the bus is closed")
        self._subscriptions.add(sub)
        new = []
        for pattern in sub.patterns:
            # One queue under several patterns: the index yields it once per topic.
            self._local.add(pattern, sub)
            refs = self._pattern_refs.get(pattern, 0)
            self._pattern_refs[pattern] = refs + 1
            if refs == 0:
                new.append(pattern)
        return new

    def _unregister(self, sub: BaseSubscription) -> list[str]:
        """Remove ``sub``; its patterns no other local Subscription has."""
        if sub not in self._subscriptions:
            return []
        self._subscriptions.discard(sub)
        gone = []
        for pattern in sub.patterns:
            self._local.remove(pattern, sub)
            refs = self._pattern_refs[pattern] - 1
            if refs:
                self._pattern_refs[pattern] = refs
            else:
                del self._pattern_refs[pattern]
                gone.append(pattern)
        return gone

    def _deliver(self, topic: str, raw: bytes) -> None:
        self._impl.deliver(self._local, topic, raw)

    async def _attach(self, sub: BaseSubscription) -> None:
        raise NotImplementedError

    async def _detach(self, sub: BaseSubscription) -> None:
        raise NotImplementedError
