"""Running the app under uvicorn (on uvloop, with httptools): streams end
cleanly when the server stops, and systemd learns when it is ready.

uvicorn's graceful shutdown waits for every response to finish; an event
stream never does by itself, so ``Server.shutdown`` first ends them all
(each gets the end of its response), then lets uvicorn finish as usual.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import uvicorn

from decnet.bus import systemd

from .config import WebConfig
from .stream import AbandonedFilter

#: Once the streams were told to end, how long uvicorn waits before cancelling what is left.
GRACEFUL_SHUTDOWN = 5.0


def uvicorn_config(app: Any, config: WebConfig, loop: str = "uvloop", **extra: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` from ``config``."""
    options = dict(loop=loop, http="httptools", lifespan="on", log_level=config.log_level,
                   timeout_graceful_shutdown=GRACEFUL_SHUTDOWN, proxy_headers=False, server_header=False)
    if config.uds:
        options["uds"] = config.uds
    else:
        options.update(host=config.host, port=config.port)
    options.update(extra)
    return uvicorn.Config(app, **options)


def quiet_abandoned() -> None:
    """Hide uvicorn's error line for a stream this app dropped on purpose."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, AbandonedFilter) for f in logger.filters):
        logger.addFilter(AbandonedFilter())


class Server(uvicorn.Server):
    """uvicorn's server, ending the event streams first when it stops."""

    async def startup(self, sockets: Optional[list] = None) -> None:
        quiet_abandoned()
        await super().startup(sockets)
        if self.started:
            systemd.notify("READY=1\nSTATUS=serving")

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once stopped; a stop asked for is a
        # clean exit (0) here, as it is for the broker.
        self._captured_signals.clear()

    async def shutdown(self, sockets: Optional[list] = None) -> None:
        systemd.notify("STOPPING=1")
        hubs = getattr(getattr(self.config.loaded_app, "state", None), "hubs", None)
        if hubs is None:  # the app is wrapped (middleware): find it where create_app left it
            hubs = _find_hubs(self.config.loaded_app)
        if hubs is not None:
            hubs.end_all()
        await super().shutdown(sockets)


def _find_hubs(app: Any):
    seen = 0
    while app is not None and seen < 16:
        state = getattr(app, "state", None)
        if state is not None and hasattr(state, "hubs"):
            return state.hubs
        app = getattr(app, "app", None)
        seen += 1
    return None


def serve(app: Any, config: WebConfig) -> int:
    """Serve ``app`` until SIGTERM/SIGINT; the exit code."""
    server = Server(uvicorn_config(app, config))
    server.run()
    return 0 if server.started else 1
