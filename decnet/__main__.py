"""``python -m decnet``: the ``decnet`` command line."""

from decnet.cli import main

main()
