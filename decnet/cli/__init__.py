"""The ``decnet`` command line: ``main()`` and, on first use, the typer ``app``.

``main()`` starts the broker without importing typer when the command line is
a plain ``decnet bus [--option value]...`` (decnet/cli/options.py says why);
everything else is the typer application in decnet/cli/root.py.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    """The ``decnet`` console script."""
    from decnet.cli.options import read_broker_argv

    config = read_broker_argv(sys.argv[1:])
    if config is not None:
        from decnet.bus.worker import run

        sys.exit(run(config))
    from decnet.cli.root import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from decnet.cli.root import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
