"""The options of ``decnet web`` in one place (``WebConfig``) and the check of
the JWT secret it refuses to start without."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

SECRET_ENV = "DECNET_JWT_SECRET"
MIN_SECRET_BYTES = 32
#: Fewer distinct characters than this is a placeholder, not a secret ("aaaa...").
MIN_DISTINCT = 8
#: Values (case-insensitive, also repeated to any length) that are placeholders.
KNOWN_BAD = frozenset({
    "secret", "changeme", "change-me", "change_me", "decnet", "password", "jwt", "jwt-secret", "jwtsecret",
    "your-secret-key", "your_secret_key", "secret-key", "secretkey", "default", "test", "example", "admin",
})


class SecretError(ValueError):
    """``DECNET_JWT_SECRET`` is unusable; the message says why in one line."""


def check_secret(value: Optional[str]) -> bytes:
    """The secret as bytes, or SecretError if it is unset, short or a placeholder."""
    if not value:
        raise SecretError(f"{SECRET_ENV} is not set: set it to at least {MIN_SECRET_BYTES} random bytes, e.g. "
                          f"export {SECRET_ENV}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
    raw = value.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise SecretError(f"{SECRET_ENV} is {len(raw)} bytes long: it must be at least {MIN_SECRET_BYTES}")
    low = value.strip().lower()
    for word in KNOWN_BAD:
        if low == word or (len(low) % len(word) == 0 and low == word * (len(low) // len(word))):
            raise SecretError(f"{SECRET_ENV} is a well-known placeholder ({word!r}): use a random value")
    if len(set(value)) < MIN_DISTINCT:
        raise SecretError(f"{SECRET_ENV} has fewer than {MIN_DISTINCT} distinct characters: use a random value")
    return raw


def secret_from_env(environ: Optional[Mapping[str, str]] = None) -> bytes:
    """``DECNET_JWT_SECRET`` from ``environ`` (default ``os.environ``), checked."""
    return check_secret((os.environ if environ is None else environ).get(SECRET_ENV))


@dataclass(frozen=True)
class WebConfig:
    """Every option of the web app and its stream; the defaults are the safe ones.

    ``send_timeout``: seconds a client may leave one send unfinished (it reads
    nothing) before it is dropped. ``keepalive``: seconds between ``: keepalive``
    comments (0 switches them off). ``retry_ms``: the reconnection delay the
    stream advises (``retry:``). ``client_queue``: frames held for one client
    whose socket is full, and ``client_queue_bytes`` their size; past either the
    oldest are dropped and the client gets a ``stream.resync``. ``subscription_queue``: events the process's bus
    subscription for one topology holds before it drops (and resyncs).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    uds: Optional[str] = None
    send_timeout: float = 30.0
    keepalive: float = 15.0
    retry_ms: int = 2000
    client_queue: int = 1024
    client_queue_bytes: int = 1 << 20
    subscription_queue: int = 10_000
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.send_timeout > 0:
            raise ValueError("send_timeout must be > 0 seconds")
        if self.keepalive < 0:
            raise ValueError("keepalive must be >= 0 seconds (0: off)")
        if self.retry_ms < 0:
            raise ValueError("retry_ms must be >= 0")
        if self.client_queue < 1 or self.subscription_queue < 1 or self.client_queue_bytes < 1:
            raise ValueError("client_queue, client_queue_bytes and subscription_queue must be >= 1")
