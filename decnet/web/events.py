"""The route ``GET /api/v1/topologies/{topology_id}/events`` (SPEC §8): the
live events of one topology as Server-Sent Events.

Auth (a dependency) and the id's pattern are decided before the route runs,
so a refused request never touches the bus; the stream itself is
``stream.EventStream`` on the topology's hub.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from .auth import EVENTS_SCOPE, require_scope
from .stream import EventStream

TOPOLOGY_ID = r"^[a-z0-9-]{1,64}$"
PATH = "/api/v1/topologies/{topology_id}/events"

router = APIRouter()


@router.get(
    PATH,
    response_class=EventStream,
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
    hubs = request.app.state.hubs
    client = request.client
    label = f"{claims.get('sub')!r} on topology {topology_id}" + (f" from {client.host}" if client else "")
    return EventStream(hubs, topology_id, request.headers.get("last-event-id"), label)
