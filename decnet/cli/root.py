"""The ``decnet`` typer application: ``info``, the ``bus`` commands and ``web``."""

from __future__ import annotations

import typer

import decnet.bus as decnet_bus
from decnet.bus.config import describe_source, socket_choice
from decnet.cli.bus import bus_app
from decnet.cli.web import web

app = typer.Typer(
    name="decnet",
    help="DECNET host tools: the local event bus and what talks to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and one-line errors; rich's import is 2/5 of `decnet --help`
)
app.add_typer(bus_app, name="bus")
app.command(name="web")(web)


@app.command()
def info() -> None:
    """Print the version of decnet-bus, which hot path this install runs, and
    which socket a client uses here, and why (DECNET_BUS_SOCKET, /run/decnet
    existing, or the development default)."""
    hot = "compiled (Cython)" if decnet_bus.ACCELERATED else "pure Python (slower)"
    path, source = socket_choice()
    typer.echo(f"decnet-bus {decnet_bus.__version__}")
    typer.echo(f"hot path: {hot}")
    typer.echo(f"socket: {path} ({describe_source(source)})")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"decnet-bus {decnet_bus.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """DECNET host tools: the local event bus and what talks to it."""
