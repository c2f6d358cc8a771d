"""The straightforward design of the event stream, for bench/sse.py to compare
``decnet web`` against: a FastAPI route returning sse-starlette's
``EventSourceResponse`` (with its per-send ``send_timeout``), one bus
subscription and one frame encoding per client.

Same route, same bearer-token check (``decnet.web.auth.require_scope``),
same frames (``stream.ready``, the envelope, ``stream.resync`` on a Gap) as
``decnet web``; what differs is the fan-out. Run as its own uvicorn process
(uvloop, httptools) on a UNIX socket, ready on systemd's ``READY=1``:

    DECNET_JWT_SECRET=... .venv/bin/python bench/sse_reference.py --uds /tmp/ref.sock
"""

from __future__ import annotations

import argparse
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, Path
from sse_starlette import EventSourceResponse, ServerSentEvent

from decnet.bus import get_bus, topics
from decnet.web import sse
from decnet.web.auth import EVENTS_SCOPE, require_scope
from decnet.web.config import WebConfig, secret_from_env
from decnet.web.events import PATH, TOPOLOGY_ID
from decnet.web.server import Server, uvicorn_config


def create_app(send_timeout: float = 30.0, keepalive: float = 15.0) -> FastAPI:
    """The reference app; the bus from the environment, as ``decnet web``'s."""
    bus = get_bus(name="sse reference")
    app = FastAPI()
    app.state.jwt_secret = secret_from_env()

    @app.get(PATH)
    async def topology_events(
        topology_id: Annotated[str, Path(pattern=TOPOLOGY_ID)],
        claims: Annotated[dict, Depends(require_scope(EVENTS_SCOPE))],
    ):
        skip = len("topology.") + len(topology_id) + 1  # what precedes the part sse.TYPES maps

        async def frames():
            # One subscription per client: the broker sends each event once per stream.
            async with bus.subscribe(topics.topology_all(topology_id)) as sub:
                yield _event(sse.READY, sse.now_ts(), {"topology_id": topology_id})
                async for item in sub:
                    if item.gap:
                        yield _event(sse.RESYNC, sse.now_ts(), {"reason": item.reason, "lost": item.lost})
                        continue
                    event_type = sse.TYPES.get(item.topic[skip:])
                    if event_type is None:
                        continue
                    # One encoding per client: decode the payload, build the envelope, dump it.
                    payload = orjson.loads(item.raw) if item.raw else None
                    ts = sse.payload_ts(payload) or sse.now_ts()
                    yield _event(event_type, ts, payload)

        return EventSourceResponse(frames(), ping=keepalive, send_timeout=send_timeout, sep="\n",
                                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _event(event_type: str, ts: str, payload) -> ServerSentEvent:
    """The frame, encoded for this client alone; lines end in LF as ``decnet web``'s do."""
    data = orjson.dumps({"v": sse.ENVELOPE_VERSION, "type": event_type, "ts": ts, "payload": payload}).decode()
    return ServerSentEvent(data, id=str(sse.next_id()), event=event_type, sep="\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uds", required=True, help="the UNIX socket to serve on")
    parser.add_argument("--send-timeout", type=float, default=30.0,
                        help="seconds one send may take before sse-starlette drops the client (default 30)")
    parser.add_argument("--keepalive", type=float, default=15.0, help="seconds between pings (default 15)")
    args = parser.parse_args()
    config = WebConfig(uds=args.uds, log_level="warning")
    Server(uvicorn_config(create_app(args.send_timeout, args.keepalive), config)).run()


if __name__ == "__main__":
    main()
