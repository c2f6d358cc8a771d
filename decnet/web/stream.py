"""One client's event stream: an ASGI response that sends inline and drops a
client that stops reading.

The hub hands every client of a topology the same frame bytes (``push``). The
send is stepped inline, in the hub's own task: an ASGI server's ``send`` for a
socket that takes the bytes completes without suspending (uvicorn writes to
the transport and returns), so the common case costs one call per client and
no task switch. Only a send that suspends (the client's socket and the
server's buffer are full) gets a task of its own, the drainer, which finishes
it within ``send_timeout`` while later frames queue up to ``client_queue``
frames and ``client_queue_bytes`` (oldest dropped, then one
``stream.resync``). A send that does not finish in time drops the client.

The request's own task (``EventStream.__call__``) does nothing per event: it
waits for the disconnect (``receive()``), and is cancelled by ``Client.end``
when the stream must end from this side (send timeout, error, shutdown).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Coroutine, Optional

from starlette.responses import Response

from . import sse

if TYPE_CHECKING:
    from .hub import Hubs

log = logging.getLogger("decnet.web.stream")

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
#: What ``Client.end`` may give as the reason a stream ends from this side.
SEND_TIMEOUT, ERROR, SHUTDOWN = "send_timeout", "error", "shutdown"
#: Bounds the goodbye (error frame, final chunk) to a client that is still reading.
GOODBYE_TIMEOUT = 5.0

#: Set in the request's task when it returns with its response unfinished on
#: purpose (a dropped client): ``AbandonedFilter`` then hides uvicorn's error line.
abandoned: contextvars.ContextVar[bool] = contextvars.ContextVar("decnet_web_abandoned", default=False)


class AbandonedFilter(logging.Filter):
    """Hides uvicorn's "returned without completing response" for a stream this
    app dropped on purpose (it logs its own line); any other stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (abandoned.get() and "without completing response" in str(record.msg))


def body(data: bytes) -> dict:
    """The ASGI message that sends ``data`` on an open stream."""
    return {"type": "http.response.body", "body": data, "more_body": True}


async def _finish(coro: Coroutine, yielded: Any) -> None:
    """Run a coroutine that was stepped once and suspended on ``yielded`` (the
    future it awaits, or None for a bare yield) to its end, as its Task would."""
    try:
        while True:
            try:
                if yielded is None:
                    await asyncio.sleep(0)
                else:
                    # What a Task does with the future a coroutine yields: take
                    # the "blocking" mark off, then wait for it.
                    yielded._asyncio_future_blocking = False
                    await yielded
            except BaseException:
                coro.close()
                raise
            yielded = coro.send(None)
    except StopIteration:
        return


class Client:
    """One stream's sending side. ``push`` never blocks and never raises."""

    __slots__ = ("send", "task", "limit", "limit_bytes", "send_timeout", "pending", "pending_bytes", "lost",
                 "drainer", "closing", "label")

    def __init__(self, send, task: asyncio.Task, limit: int, send_timeout: float, label: str = "",
                 limit_bytes: int = 1 << 20) -> None:
        self.send = send
        self.task = task
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.send_timeout = send_timeout
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.lost = 0
        self.drainer: Optional[asyncio.Task] = None
        #: Why the stream is ending from this side (SEND_TIMEOUT, ERROR, SHUTDOWN), or None.
        self.closing: Optional[str] = None
        self.label = label

    def push(self, data: bytes, message: Optional[dict] = None) -> None:
        """Send ``data`` now if the socket takes it, else queue it (bounded).

        ``message`` is ``body(data)``, built once by a caller that pushes the
        same frame to many clients."""
        if self.closing is not None:
            return
        if self.drainer is not None:
            pending = self.pending
            pending.append(data)
            self.pending_bytes += len(data)
            # Bounded in frames and in bytes; the newest frame always stays.
            while len(pending) > 1 and (len(pending) > self.limit or self.pending_bytes > self.limit_bytes):
                self.pending_bytes -= len(pending.popleft())
                self.lost += 1
            return
        coro = self.send(message if message is not None else body(data))
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:
            log.exception("sending to %s failed; ending its stream", self.label)
            self.end(ERROR)
            return
        self.drainer = asyncio.get_running_loop().create_task(self._drain(coro, yielded))

    async def _drain(self, coro: Coroutine, yielded: Any) -> None:
        """Finish the suspended send, then send what queued meanwhile, each
        send within ``send_timeout``."""
        try:
            async with asyncio.timeout(self.send_timeout):
                await _finish(coro, yielded)
            while self.pending or self.lost:
                chunks = list(self.pending)
                self.pending.clear()
                self.pending_bytes = 0
                if self.lost:
                    chunks.insert(0, sse.resync("slow_client", self.lost))
                    self.lost = 0
                async with asyncio.timeout(self.send_timeout):
                    await self.send(body(b"".join(chunks)))
        except TimeoutError:
            log.warning("dropping %s: it read nothing for %g s", self.label, self.send_timeout)
            self.end(SEND_TIMEOUT)
        except Exception:
            log.exception("sending to %s failed; ending its stream", self.label)
            self.end(ERROR)
        finally:
            self.drainer = None

    def end(self, reason: str) -> None:
        """End this stream from the server's side (the request's task wakes up)."""
        if self.closing is None:
            self.closing = reason
            self.task.cancel()

    def cancel_drainer(self) -> None:
        drainer = self.drainer
        if drainer is not None and drainer is not asyncio.current_task():
            drainer.cancel()


class EventStream(Response):
    """The ASGI response of ``GET /api/v1/topologies/{id}/events``: ``retry:``,
    then the topology's frames from its hub until either side ends it.

    A Starlette ``Response`` by type only (so a route may return it); its
    ``__call__`` is its own."""

    media_type = "text/event-stream"

    def __init__(self, hubs: "Hubs", topology_id: str, last_event_id: Optional[str] = None, label: str = "") -> None:
        self.background = None
        self.hubs = hubs
        self.topology_id = topology_id
        self.last_event_id = last_event_id
        self.label = label or f"a stream of topology {topology_id}"

    async def __call__(self, scope, receive, send) -> None:
        config = self.hubs.config
        task = asyncio.current_task()
        client = Client(send, task, config.client_queue, config.send_timeout, self.label, config.client_queue_bytes)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send(body(sse.retry(config.retry_ms)))
        joined = False
        try:
            self.hubs.join(self.topology_id, client, resync=self.last_event_id is not None)
            joined = True
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
        except asyncio.CancelledError:
            if client.closing is None:
                raise  # not ours (the server cancelled the request): a clean disconnect all the same
            task.uncancel()
        except Exception:
            log.exception("the stream of %s failed", self.label)
            client.closing = ERROR
        finally:
            client.cancel_drainer()
            if joined:
                self.hubs.leave(self.topology_id, client)
        await self._goodbye(client, send)

    async def _goodbye(self, client: Client, send) -> None:
        """The stream ends from this side: the error frame if there is one,
        then the end of the response; a client that reads nothing is cut."""
        if client.closing != SEND_TIMEOUT:
            last = sse.error() if client.closing == ERROR else b""
            try:
                async with asyncio.timeout(min(client.send_timeout, GOODBYE_TIMEOUT)):
                    await send({"type": "http.response.body", "body": last, "more_body": False})
                return
            except (TimeoutError, Exception):  # cut below; the failure was logged where it happened
                pass
        abandoned.set(True)
