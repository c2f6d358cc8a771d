"""Sizes for the reliability tests, and how they report what they measured.

Every reliability test runs a short version by default (CI) and the long one
documented in docs/RELIABILITY.md when ``DECNET_BUS_STRESS=long``
(``make stress``). Same code, bigger numbers.
"""

from __future__ import annotations

import os

LONG = os.environ.get("DECNET_BUS_STRESS", "").lower() == "long"


def scale(short, long):
    """``long`` under ``DECNET_BUS_STRESS=long``, else ``short``."""
    return long if LONG else short


def report(name: str, **numbers) -> None:
    """One line per measurement, for docs/RELIABILITY.md (seen with ``pytest -s`` or ``-rA``)."""
    print(f"\n[reliability] {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
