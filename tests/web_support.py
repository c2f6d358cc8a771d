"""Helpers of the web tests: the app served by uvicorn in-process on a UNIX
socket (httpx's ASGI transport buffers a whole body, so an endless stream
must be read off a real server), and reading frames as envelopes."""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from decnet.web.config import WebConfig
from decnet.web.server import Server, uvicorn_config
from decnet.web.testing import SSEClient, make_token

WAIT = 10.0
EVENTS = "/api/v1/topologies/{}/events"


@contextlib.asynccontextmanager
async def serving(app, path):
    """``app`` under uvicorn on the running loop, listening on ``path``."""
    config = uvicorn_config(app, WebConfig(uds=str(path)), loop="none", log_level="warning")
    config.load()
    server = Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    assert server.started
    try:
        yield server
    finally:
        await server.shutdown()


async def stream(path, topology_id="t1", token=None, **headers) -> SSEClient:
    """An open event stream (status checked) of ``topology_id``."""
    headers = {"Authorization": f"Bearer {token or make_token()}", **{k.replace("_", "-"): v for k, v in headers.items()}}
    client = await asyncio.wait_for(SSEClient.open(path, EVENTS.format(topology_id), headers), WAIT)
    assert client.status == 200, (client.status, client.headers)
    return client


async def envelope(client: SSEClient, timeout: float = WAIT) -> dict:
    """The next event's envelope, with its frame's ``id`` and ``event`` beside."""
    frame = await asyncio.wait_for(client.event(), timeout)
    assert frame is not None, "the stream ended"
    data = orjson.loads(frame["data"])
    assert frame["event"] == data["type"]
    return {**data, "id": int(frame["id"])}


async def ready(client: SSEClient) -> dict:
    """Read ``retry:`` then ``stream.ready``."""
    first = await asyncio.wait_for(client.frame(), WAIT)
    assert first == {"retry": "2000"}, first
    got = await envelope(client)
    assert got["type"] == "stream.ready", got
    return got
