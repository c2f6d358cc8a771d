"""``create_app``: the FastAPI application of ``decnet web``."""

from __future__ import annotations

import contextlib
from typing import Optional

from fastapi import FastAPI

from decnet.bus import Bus, get_bus

from . import events, page
from .config import WebConfig, check_secret, secret_from_env
from .hub import Hubs


class WebApp(FastAPI):
    """FastAPI, with the event stream's route served straight from the server
    (``events.serve``: see there why)."""

    async def __call__(self, scope, receive, send) -> None:
        topology_id = events.topology_of(scope) if scope["type"] == "http" else None
        if topology_id is None:
            await super().__call__(scope, receive, send)
        else:
            await events.serve(self.state, scope, receive, send, topology_id)


def create_app(bus: Optional[Bus] = None, *, config: Optional[WebConfig] = None,
               secret: Optional[str] = None) -> WebApp:
    """The app. ``bus``: the bus to subscribe on (tests pass a ``FakeBus``);
    None → ``get_bus()``, which the app closes when it stops. ``secret``: the
    JWT secret; None → ``DECNET_JWT_SECRET``. Either is checked: a missing,
    short or placeholder secret raises ``config.SecretError``."""
    config = config or WebConfig()
    jwt_secret = secret_from_env() if secret is None else check_secret(secret)
    own_bus = bus is None
    if bus is None:
        bus = get_bus(name="decnet web")
    hubs = Hubs(bus, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            hubs.end_all()
            if own_bus:
                await bus.close()

    app = WebApp(title="decnet web", summary="Live DECNET topology events over Server-Sent Events",
                  lifespan=lifespan)
    app.state.hubs = hubs
    app.state.bus = bus
    app.state.config = config
    app.state.jwt_secret = jwt_secret
    app.include_router(events.router)
    app.include_router(page.router)
    return app
