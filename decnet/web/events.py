"""The route ``GET /api/v1/topologies/{topology_id}/events`` (docs/web.md): the
live events of one topology as Server-Sent Events.

``serve`` is the route as the app runs it: called by ``WebApp`` straight from
the server, before FastAPI's middleware and routing, so an open stream holds
none of their per-request objects (memory per idle client) and a send passes
through no wrapper (CPU per frame). Auth is decided first, then the id's
pattern, so a refused request never touches the bus. ``router`` declares the
same route to FastAPI with the same checks, for the OpenAPI schema and for an
app that mounts it without ``WebApp``.
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

import orjson
from fastapi import APIRouter, Depends, Path, Request

from .auth import EVENTS_SCOPE, AuthError, authorize, require_scope
from .stream import EventStream

TOPOLOGY_ID = r"^[a-z0-9-]{1,64}$"
PATH = "/api/v1/topologies/{topology_id}/events"
_PREFIX, _SUFFIX = PATH.split("{topology_id}")
_ID = re.compile(r"[a-z0-9-]{1,64}\Z")

router = APIRouter()


def topology_of(scope: dict) -> Optional[str]:
    """The path's ``{topology_id}`` if ``scope`` is a GET of this route (any id,
    valid or not, as FastAPI's router would match it), else None."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path = scope["path"]
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    topology_id = path[len(_PREFIX):len(path) - len(_SUFFIX)]
    return topology_id if topology_id and "/" not in topology_id else None


def _invalid_id(topology_id: str) -> dict:
    """FastAPI's 422 body for a path parameter that misses its pattern."""
    return {"detail": [{"type": "string_pattern_mismatch", "loc": ["path", "topology_id"],
                        "msg": f"String should match pattern '{TOPOLOGY_ID}'", "input": topology_id,
                        "ctx": {"pattern": TOPOLOGY_ID}}]}


async def _json(send, status: int, body: dict, headers: tuple = ()) -> None:
    data = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data)),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


async def serve(state, scope: dict, receive, send, topology_id: str) -> None:
    """The route: 401/403, then 422, then the stream on the topology's hub."""
    header = last_event_id = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
        elif name == b"last-event-id":
            last_event_id = value.decode("latin-1") or None  # empty: none (as browsers send it)
    try:
        claims = authorize(header, state.jwt_secret, EVENTS_SCOPE)
    except AuthError as error:
        await _json(send, error.status, {"detail": error.detail},
                    ((b"www-authenticate", error.challenge.encode()),))
        return
    if not _ID.match(topology_id):
        await _json(send, 422, _invalid_id(topology_id))
        return
    client = scope.get("client")
    label = f"{claims.get('sub')!r} on topology {topology_id}" + (f" from {client[0]}" if client else "")
    await EventStream(state.hubs, topology_id, last_event_id, label)(scope, receive, send)


@router.get(
    PATH,
    response_class=EventStream,
    status_code=200,
    summary="Live events of one topology (Server-Sent Events)",
    response_description="text/event-stream: stream.ready, then mutation.*, topology.* and stream.resync frames",
    responses={401: {"description": "no valid bearer token"}, 403: {"description": "the token lacks topology:events"}},
)
async def topology_events(
    request: Request,
    topology_id: Annotated[str, Path(pattern=TOPOLOGY_ID, description="lower-case letters, digits and '-', 1 to 64")],
    claims: Annotated[dict, Depends(require_scope(EVENTS_SCOPE))],
):
    """The stream: ``retry:``, ``stream.ready`` once the bus subscription is
    live, then every event of the topology; ``stream.resync`` whenever events
    may have been missed (reload the topology then). docs/web.md has the table."""
    client = request.client
    label = f"{claims.get('sub')!r} on topology {topology_id}" + (f" from {client.host}" if client else "")
    return EventStream(request.app.state.hubs, topology_id, request.headers.get("last-event-id"), label)
