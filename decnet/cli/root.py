"""The ``decnet`` typer application: ``info``, the ``bus`` commands and ``web``."""

from __future__ import annotations

import typer

import decnet.bus as decnet_bus
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
    """Print the version of decnet-bus and which hot path this install runs."""
    path = "compiled (Cython)" if decnet_bus.ACCELERATED else "pure Python (slower)"
    typer.echo(f"decnet-bus {decnet_bus.__version__}")
    typer.echo(f"hot path: {path}")


@app.callback()
def _root() -> None:
    """DECNET host tools: the local event bus and what talks to it."""
