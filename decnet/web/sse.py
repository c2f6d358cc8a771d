"""The bytes of the event stream: SSE frames, the ``{v,type,ts,payload}``
envelope and the bus topic → SSE type table (docs/web.md).

A frame is built once per event and the same bytes object goes to every
client of the topology, so nothing here depends on the client.
"""

from __future__ import annotations

import datetime
import itertools
import re
from typing import Any, Optional

import orjson

from decnet.bus.events import timestamp as format_ts

ENVELOPE_VERSION = 1
KEEPALIVE = b": keepalive\n\n"

#: What follows ``topology.{id}.`` in a bus topic → the SSE ``type``.
#: Anything else under ``topology.{id}.>`` is not sent (the hub counts it).
TYPES: dict[str, str] = {
    "mutation.enqueued": "mutation.enqueued",
    "mutation.applying": "mutation.applying",
    "mutation.applied": "mutation.applied",
    "mutation.failed": "mutation.failed",
    "status": "topology.status_changed",
    "version": "topology.version_bumped",
}

READY = "stream.ready"
RESYNC = "stream.resync"
ERROR = "error"
#: What the client is told on an unexpected error; the details stay in the server's log.
ERROR_MESSAGE = "internal error: reload the topology and reconnect"

_ids = itertools.count(1)
_EXACT_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_UTC = datetime.timezone.utc


def next_id() -> int:
    """The next event id: unique in this process and increasing along a stream
    (ids say nothing about loss; there is no replay)."""
    return next(_ids)


def now_ts() -> str:
    """The current time as an envelope ``ts``."""
    return format_ts(datetime.datetime.now(_UTC))


def payload_ts(payload: Any) -> Optional[str]:
    """The publisher's ``ts`` in ``payload`` as an envelope ``ts`` (an RFC 3339
    string or epoch seconds), or None when there is none usable."""
    if not isinstance(payload, dict):
        return None
    ts = payload.get("ts")
    if isinstance(ts, str):
        if _EXACT_TS.match(ts):  # what the publishing helpers stamp
            return ts
        try:
            return format_ts(datetime.datetime.fromisoformat(ts))
        except ValueError:
            return None
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        try:
            return format_ts(datetime.datetime.fromtimestamp(ts, _UTC))
        except (ValueError, OverflowError, OSError):
            return None
    return None


def frame(event_type: str, ts: str, payload_json: bytes, event_id: Optional[int] = None) -> bytes:
    """One SSE frame: ``id:``, ``event:`` and ``data:`` with the envelope.

    ``payload_json`` is spliced in as it is: it must be one JSON document on
    one line (``event_json`` makes sure of it for a bus payload)."""
    if event_id is None:
        event_id = next_id()
    return b'id: %d\nevent: %s\ndata: {"v":%d,"type":"%s","ts":"%s","payload":%s}\n\n' % (
        event_id, event_type.encode(), ENVELOPE_VERSION, event_type.encode(), ts.encode(), payload_json)


def event_json(raw: bytes) -> tuple[bytes, Optional[str]]:
    """A bus payload as one line of JSON for the envelope, and its ``ts``.

    The publisher's bytes are kept when they are one line (no re-encoding);
    raises ``orjson.JSONDecodeError`` when they are not JSON at all."""
    if not raw:
        return b"null", None
    payload = orjson.loads(raw)
    if b"\n" in raw or b"\r" in raw:
        raw = orjson.dumps(payload)
    return raw, payload_ts(payload)


def stream_frame(event_type: str, payload: Any) -> bytes:
    """A frame of the stream's own (``stream.ready``, ``stream.resync``, ``error``)."""
    return frame(event_type, now_ts(), orjson.dumps(payload))


def ready(topology_id: str) -> bytes:
    """``stream.ready``: every event published from now on is on this stream."""
    return stream_frame(READY, {"topology_id": topology_id})


def resync(reason: str, lost: Optional[int] = None) -> bytes:
    """``stream.resync``: events may have been missed; reload from the REST API."""
    return stream_frame(RESYNC, {"reason": reason, "lost": lost})


def error() -> bytes:
    """``error``: something unexpected happened (the log has it); the stream ends."""
    return stream_frame(ERROR, {"message": ERROR_MESSAGE})


def retry(ms: int) -> bytes:
    """The ``retry:`` field: how long a client waits before reconnecting."""
    return b"retry: %d\n\n" % ms
