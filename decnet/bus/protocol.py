"""The wire protocol: verbs, limits and the frame codec of the picked implementation."""

from __future__ import annotations

from ._compat import FrameDecoder, encode
from .constants import *  # noqa: F403  (verbs, limits and error codes are the protocol's vocabulary)
from .errors import FrameError

__all__ = ["FrameDecoder", "FrameError", "encode"]
