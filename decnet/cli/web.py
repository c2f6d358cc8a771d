"""``decnet web``: serve the live topology events over SSE (docs/web.md).

Needs the ``web`` extra; without it, or without a usable ``DECNET_JWT_SECRET``,
it says so in one line and exits 1.
"""

from __future__ import annotations

from typing import Optional

import typer

from decnet.web.config import WebConfig

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
DEFAULTS = WebConfig()


def _fail(message: str) -> None:
    typer.echo(f"decnet: {message}", err=True)
    raise typer.Exit(1)


def web(
    host: str = typer.Option(DEFAULTS.host, "--host", help="Address to listen on (TCP)."),
    port: int = typer.Option(DEFAULTS.port, "--port", min=0, max=65535, help="TCP port to listen on."),
    uds: Optional[str] = typer.Option(None, "--uds", metavar="PATH",
                                      help="Listen on this UNIX socket instead of TCP (for a reverse proxy)."),
    send_timeout: float = typer.Option(DEFAULTS.send_timeout, "--send-timeout", min=0.001, metavar="SECONDS",
                                       help="Drop a client whose socket takes nothing for this long."),
    keepalive: float = typer.Option(DEFAULTS.keepalive, "--keepalive", min=0.0, metavar="SECONDS",
                                    help="Seconds between ': keepalive' comments on idle streams (0: none)."),
    log_level: str = typer.Option(DEFAULTS.log_level, "--log-level", help=f"One of {', '.join(LOG_LEVELS)}."),
) -> None:
    """Serve GET /api/v1/topologies/{id}/events (Server-Sent Events) from the bus.

    Requires DECNET_JWT_SECRET (at least 32 random bytes) and the `web` extra.
    The bus is the one of DECNET_BUS_SOCKET (docs/web.md)."""
    if log_level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}", param_hint="'--log-level'")
    try:
        from decnet.web.app import create_app
        from decnet.web.server import serve
    except ImportError as error:
        _fail(f"decnet web needs the `web` extra ({error.name} is missing): pip install 'decnet-bus[web]'")
    from decnet.web.config import SecretError

    config = WebConfig(host=host, port=port, uds=uds, send_timeout=send_timeout, keepalive=keepalive,
                       log_level=log_level.lower())
    try:
        app = create_app(config=config)
    except SecretError as error:
        _fail(str(error))
    raise typer.Exit(serve(app, config))
