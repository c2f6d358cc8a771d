"""The ``decnet`` command line: ``main()`` and, on first use, the typer ``app``.

``main()`` starts the broker without importing typer when the command line is
a plain ``decnet bus [--option value]...`` (decnet/cli/options.py says why);
everything else is the typer application in decnet/cli/root.py, imported only
then.
"""

from __future__ import annotations

import sys
from typing import Any

from decnet.bus import worker
from decnet.cli.options import read_broker_argv


def main() -> None:
    """The ``decnet`` console script."""
    config = read_broker_argv(sys.argv[1:])
    if config is not None:
        sys.exit(worker.run(config))
    from decnet.cli.root import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":  # typer and pydantic: only for the commands that need them
        from decnet.cli.root import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
