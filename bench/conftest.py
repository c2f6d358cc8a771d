"""Every micro-benchmark runs against both implementations, through the tests'
own ``impl`` fixture (tests/implementations.py, on the path by pyproject's
``pythonpath``)."""

from implementations import impl  # noqa: F401  (the fixture)
