"""The broker, ``Broker``: the connections it holds, the routing between
them, its counters and its shutdown. Each connection is a ``BrokerProtocol``
(broker_connection.py), which owns its own flow control.

One event's path: ``BrokerProtocol.data_received`` feeds the decoder (relay
mode, so a PUB comes out as its ready-made EVT frame); ``relay()`` checks the
topic, looks it up in the SubscriptionIndex, appends that one bytes object to
each matching connection's ``Outbox`` and lists the outbox in the broker's
``FlushSet``; when the read is handled, ``Broker.flush`` gives each listed
connection one ``writelines``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

import orjson

from . import _compat
from . import constants as C
from .broker_connection import BYE, PONG, BrokerProtocol
from .config import BrokerConfig
from .errors import TopicError

__all__ = ["Broker", "BrokerProtocol"]

log = logging.getLogger("decnet.bus.broker")

# How long, in --max-stall-ms, an outbox past its stall mark keeps asking for
# its publishers to be held after its reader last took from it
# (FlushSet.window). A window, not a number of holds: every publisher whose read
# reaches the queue in it is held, as many as there are, while a reader that
# stopped reading costs each publisher at most this long once. Several holds
# long, so a reader that is behind but reading (at the default, one that takes
# 192 KiB, a transport's worth, within 20 ms) keeps it open from take to take;
# well under the 100 ms a publisher's client waits on a broker that does not
# read it before it drops, so a reader that stopped never makes one drop.
HOLD_WINDOW = 4


class Broker:
    """Routes events between connections and keeps the counters of the heartbeat.

    ``config`` holds its options; ``impl`` is the hot-path implementation it
    routes with (``decnet.bus._compat.impl``, the selected one, by default).
    ``connections`` maps each connection's outbox to its connection: routing
    lists outboxes in ``to_flush``, and this is how the broker finds whom to write.
    """

    def __init__(
        self,
        config: BrokerConfig,
        *,
        impl=None,
        loop_name: str = "asyncio",
        version: str = "",
    ) -> None:
        self.config = config
        self.impl = impl if impl is not None else _compat.impl
        self.loop_name = loop_name
        self.version = version
        self.accelerated = self.impl is _compat.implementations().get("compiled")
        # Past this, an outbox that is still being drained asks its publishers
        # to wait; never without stalls or without batching (nothing to wait for).
        self.stall_at = config.queue_limit * 3 // 4 if config.max_stall > 0 and config.batch_writes else 0
        self.stalls = 0
        self.index = self.impl.SubscriptionIndex()  # pattern -> the subscribers' Outboxes
        self.stats = self.impl.RouteStats()
        self.to_flush = self.impl.FlushSet(HOLD_WINDOW * config.max_stall)
        self.relay = self.impl.relay
        self.connections: dict = {}  # Outbox -> BrokerProtocol
        self.pong_frame = self.impl.encode(PONG)
        self.bye_frame = self.impl.encode(BYE)
        self.started = time.monotonic()
        self.next_id = 0
        self.subscriptions = 0
        self._gone: Optional[asyncio.Event] = None  # set when the last connection goes, once shutting down

    # -- connections

    def accept(self, conn: BrokerProtocol) -> None:
        self.next_id += 1
        conn.client_id = self.next_id
        if len(self.connections) >= self.config.max_connections:
            conn.fail(C.E_TOO_MANY_CONNECTIONS, f"the broker holds its limit of {self.config.max_connections} connections")
            return
        self.connections[conn.box] = conn

    def release(self, conn: BrokerProtocol, exc: Optional[Exception]) -> None:
        if self.connections.get(conn.box) is not conn:
            return
        del self.connections[conn.box]
        for pattern in conn.patterns:
            self.index.remove(pattern, conn.box)
        self.subscriptions -= len(conn.patterns)
        conn.patterns.clear()
        pid, uid, gid = conn.peer
        # A client that said BYE may hang up before our BYE reaches it: still a clean close.
        how = f"lost: {exc}" if exc and not conn.said_bye else "closed"
        if conn.hello:
            log.info("disconnect #%d %r pid=%d uid=%d gid=%d %s (dropped %d)", conn.client_id, conn.name, pid, uid, gid, how, conn.dropped)
        else:
            log.info("disconnect #%d pid=%d uid=%d gid=%d before HELLO, %s", conn.client_id, pid, uid, gid, how)
        if not self.connections and self._gone is not None:
            self._gone.set()

    def hello_reply(self, conn: BrokerProtocol) -> dict:
        return {
            "v": C.PROTOCOL_VERSION,
            "server": "decnet-bus",
            "version": self.version,
            "max_payload": self.config.max_payload,
            "client_id": conn.client_id,
        }

    def error_frame(self, code: str, message: str) -> bytes:
        return self.impl.encode(C.ERR, None, orjson.dumps({"code": code, "message": message}))

    # -- routing

    def refuse(self, conn: BrokerProtocol, topic: Optional[str]) -> None:
        """ERR for a PUB that relay() would not route: no topic, a bad one, or a reserved one.

        Valid PUBs never come here: relay() routes them without leaving C."""
        if _checked(conn, self.impl.check_topic, topic, C.E_BAD_TOPIC, "PUB needs a topic"):
            conn.send_error(C.E_RESERVED_TOPIC, f"topic {topic!r} is reserved for the broker ({C.RESERVED_PREFIX}*)")

    def emit(self, topic: str, payload: dict) -> None:
        """Publish as the broker itself (the heartbeat); nobody to hold."""
        evt = self.impl.encode(C.EVT, topic, orjson.dumps(payload))
        self.to_flush.now = time.monotonic()
        self.stats.routed += self.impl.route(self.index, None, True, topic, evt, self.to_flush)
        self.flush()

    def flush(self) -> None:
        """One write per connection that got anything since the last flush
        (which also clears the pressure that routing reported)."""
        to_flush = self.to_flush
        if to_flush:
            connections = self.connections
            for box in to_flush.take():
                conn = connections.get(box)
                if conn is not None:
                    conn.drain()

    def subscribe(self, conn: BrokerProtocol, pattern: Optional[str]) -> None:
        if not _checked(conn, self.impl.check_pattern, pattern, C.E_BAD_PATTERN, "SUB needs a pattern"):
            return
        if pattern in conn.patterns:
            return
        if len(conn.patterns) >= self.config.max_subscriptions:
            conn.send_error(C.E_TOO_MANY_SUBSCRIPTIONS, f"a connection may hold at most {self.config.max_subscriptions} subscriptions")
            return
        conn.patterns.add(pattern)
        self.index.add(pattern, conn.box)
        self.subscriptions += 1

    def unsubscribe(self, conn: BrokerProtocol, pattern: Optional[str]) -> None:
        if not _checked(conn, self.impl.check_pattern, pattern, C.E_BAD_PATTERN, "UNSUB needs a pattern"):
            return
        if pattern in conn.patterns:
            conn.patterns.discard(pattern)
            self.index.remove(pattern, conn.box)
            self.subscriptions -= 1

    # -- life cycle

    def health(self) -> dict:
        return {
            "v": C.PROTOCOL_VERSION,
            "ts": time.time(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "loop": self.loop_name,
            "accelerated": self.accelerated,
            "version": self.version,
            "connections": len(self.connections),
            "subscriptions": self.subscriptions,
            "published": self.stats.published,
            "routed": self.stats.routed,
            "delivered": self.stats.routed - self.stats.dropped,
            "dropped": self.stats.dropped,
            "stalls": self.stalls,
            "max_payload": self.config.max_payload,
            "queue_limit": self.config.queue_limit,
        }

    async def shutdown(self, timeout: float = 2.0) -> None:
        """BYE to every client, let the transports flush until the last
        connection is gone (at most ``timeout`` seconds), then abort the rest."""
        for conn in list(self.connections.values()):
            conn.close()
        if self.connections:
            self._gone = asyncio.Event()
            try:
                await asyncio.wait_for(self._gone.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        for conn in list(self.connections.values()):
            conn.transport.abort()


def _checked(conn: BrokerProtocol, check, value: Optional[str], code: str, missing: str) -> bool:
    """Run ``check`` on a request's argument; on failure ERR the client (the connection stays)."""
    try:
        check(value)
    except TopicError as error:
        conn.send_error(code, str(error))
        return False
    except TypeError:  # no argument on the line
        conn.send_error(code, missing)
        return False
    return True
