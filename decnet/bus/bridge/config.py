"""Everything a bridge is told: ``BridgeConfig``, checked once, and the TLS
context and password it derives from files.

The command line fills it (decnet/cli/bridge.py); tests and benchmarks build
it directly. ``BridgeConfig.check`` turns every user mistake into one
``ConfigError`` whose message says what to fix.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from .mapping import DEFAULT_PREFIX, Mapping, MappingError

#: The environment variable the NATS password is read from (never the command line: `ps` shows it).
PASSWORD_ENV = "DECNET_NATS_PASSWORD"
SCHEMES = ("nats", "tls")


class ConfigError(ValueError):
    """A bridge configuration that cannot run; the message says why."""


def default_name() -> str:
    """The host name's first label: what a bridge is called unless told."""
    return socket.gethostname().split(".")[0]


@dataclass
class BridgeConfig:
    """One bridge: its NATS servers, what it exports and imports, and its bounds."""

    servers: list[str]
    exports: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    prefix: str = DEFAULT_PREFIX
    name: Optional[str] = None
    #: The local broker's socket (None: $DECNET_BUS_SOCKET or the default path).
    socket: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    #: Seconds between heartbeats on system.bridge.<name>.health; 0: none.
    health_interval: float = 5.0
    log_level: str = "info"
    loop: str = "auto"
    #: Local events waiting to be exported (the export Subscription's queue, drop-oldest).
    export_queue: int = 10_000
    #: Imported messages waiting for the local broker (drop-oldest past either bound).
    import_queue: int = 10_000
    import_queue_bytes: int = 8 * 1024 * 1024
    #: Bytes nats-py buffers while reconnecting (then publishes are dropped and counted).
    pending_size: int = 2 * 1024 * 1024
    #: Seconds before trying a server that was just tried again.
    reconnect_wait: float = 1.0
    #: NATS keepalive: a server silent for ping_interval * (max_pings + 1) s is left.
    ping_interval: float = 5.0
    max_pings: int = 2
    #: Seconds SIGTERM gives the bridge to hand over what it holds.
    drain_timeout: float = 5.0

    def check(self) -> Mapping:
        """Raise ConfigError for anything that cannot run; the mapping otherwise."""
        if not self.servers:
            raise ConfigError("--nats: give at least one NATS server URL, e.g. nats://127.0.0.1:4222")
        for url in self.servers:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            if parts.scheme not in SCHEMES or not parts.hostname:
                raise ConfigError(f"--nats {url!r}: expected nats://HOST:PORT or tls://HOST:PORT")
            try:
                parts.port
            except ValueError:
                raise ConfigError(f"--nats {url!r}: the port is not a number") from None
        if not self.exports and not self.imports:
            raise ConfigError("nothing would cross: give at least one --export or --import pattern")
        if self.name is None:
            self.name = default_name()
        try:
            mapping = Mapping(self.name, self.exports, self.imports, self.prefix)
        except MappingError as error:
            raise ConfigError(str(error)) from None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together (the client certificate and its key)")
        for option, path in (("--tls-ca", self.tls_ca), ("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigError(f"{option} {path}: not a readable file")
        if self.user is not None and not self.password:
            raise ConfigError(f"--user {self.user}: no password; set {PASSWORD_ENV} or give --password-file")
        if self.password and self.user is None:
            raise ConfigError("a NATS password needs --user")
        if self.health_interval < 0:
            raise ConfigError("--health-interval must be >= 0 (0: no heartbeat)")
        return mapping

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """The TLS context for NATS when a CA or a client certificate is given, else None
        (a tls:// URL alone uses the system's CAs)."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        if self.tls_cert is not None:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


def read_password(path: Optional[str]) -> Optional[str]:
    """The NATS password: the first line of ``path`` when given, else
    ``$DECNET_NATS_PASSWORD``, else None. ConfigError if the file cannot be read."""
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ConfigError(f"--password-file {path}: {error.strerror or error}") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise ConfigError(f"--password-file {path}: the file is empty")
        return password
    return os.environ.get(PASSWORD_ENV) or None
