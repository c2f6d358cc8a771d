"""The live page of one topology: ``GET /topologies/{topology_id}/live`` and
its three static files, shipped as package data in ``decnet/web/static/``
(no build step).

The page reads the event stream itself (``fetch()`` with the bearer token
from ``sessionStorage``), so the server only hands out fixed bytes: the same
HTML for every topology (the script takes the id from the address), and
every response carries a Content-Security-Policy that allows this origin
only, with no inline script or style.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from .events import TOPOLOGY_ID

PAGE_PATH = "/topologies/{topology_id}/live"
STATIC_PREFIX = "/static/"

#: Only this origin, for everything; no inline code, no framing, no plugins.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files are small and change with the package: always revalidate.
    "Cache-Control": "no-cache",
}
#: The static files the page uses → their media type; no other name is served.
STATIC = {
    "live.js": "text/javascript; charset=utf-8",
    "live.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

router = APIRouter()


@functools.cache
def static_file(name: str) -> bytes:
    """The bytes of ``decnet/web/static/<name>`` (read once)."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _file(name: str, media_type: str) -> Response:
    return Response(static_file(name), media_type=media_type, headers=HEADERS)


@router.get(PAGE_PATH, summary="The live page of one topology (HTML)", response_class=Response,
            responses={200: {"content": {"text/html": {}}}})
async def live_page(
    topology_id: Annotated[str, Path(pattern=TOPOLOGY_ID, description="lower-case letters, digits and '-', 1 to 64")],
) -> Response:
    """A page that shows the topology's status, version and mutations live,
    from ``GET /api/v1/topologies/{topology_id}/events`` (it asks for a token)."""
    return _file("live.html", "text/html; charset=utf-8")


@router.get(STATIC_PREFIX + "{name}", include_in_schema=False)
async def static(name: str) -> Response:
    """One of the page's files, or 404."""
    media_type = STATIC.get(name)
    if media_type is None:
        return Response(b'{"detail":"Not Found"}', status_code=404, media_type="application/json")
    return _file(name, media_type)
