"""``decnet bus bridge``: join this host's bus to other hosts' over NATS.

Exit codes: 0 stopped by SIGTERM/SIGINT after handing over what it held;
1 nats-py is missing (or the loop cannot start); 2 a usage error.
"""

from __future__ import annotations

import enum
from typing import List, Optional

import typer

from decnet.bus.bridge.config import PASSWORD_ENV, BridgeConfig, ConfigError, read_password
from decnet.cli.options import FIELDS

SOCKET_HELP = FIELDS["socket"].metadata["help"]


class LogLevel(str, enum.Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class Loop(str, enum.Enum):
    auto = "auto"
    uvloop = "uvloop"
    asyncio = "asyncio"


def _fail(message: str, code: int) -> None:
    typer.echo(f"decnet: {message}", err=True)
    raise typer.Exit(code)


def bridge(
    nats: List[str] = typer.Option(..., "--nats", metavar="URL[,URL...]",
                                   help="NATS servers (nats://HOST:PORT or tls://HOST:PORT), comma-separated or repeated; "
                                        "the bridge uses any of them and reconnects forever."),
    exports: List[str] = typer.Option([], "--export", metavar="PATTERN",
                                      help="Local topics to publish on NATS as <prefix>.<topic> (repeatable). "
                                           "Nothing is exported without one; system.bus.* never is."),
    imports: List[str] = typer.Option([], "--import", metavar="PATTERN",
                                      help="Topics to take from NATS (<prefix>.<pattern>) and publish on the local bus "
                                           "(repeatable). Nothing is imported without one."),
    prefix: str = typer.Option("decnet", "--prefix", help="The NATS subject prefix: local topic T is <prefix>.T."),
    name: Optional[str] = typer.Option(None, "--name",
                                       help="This bridge's name, one topic token, different on every host "
                                            "[default: the host name's first label]."),
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
    tls_ca: Optional[str] = typer.Option(None, "--tls-ca", metavar="FILE", help="CA certificate(s) to verify the NATS server."),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert", metavar="FILE",
                                           help="Client certificate for mutual TLS (with --tls-key)."),
    tls_key: Optional[str] = typer.Option(None, "--tls-key", metavar="FILE", help="The client certificate's private key."),
    user: Optional[str] = typer.Option(None, "--user", help=f"NATS user; the password comes from ${PASSWORD_ENV} or --password-file."),
    password_file: Optional[str] = typer.Option(None, "--password-file", metavar="FILE",
                                                help="File whose first line is the NATS password (never on the command line: ps shows it)."),
    health_interval: float = typer.Option(5.0, "--health-interval", metavar="SECONDS", min=0,
                                          help="Seconds between heartbeats on system.bridge.<name>.health; 0: none."),
    log_level: LogLevel = typer.Option(LogLevel.info, "--log-level", case_sensitive=False, help="Logging threshold."),
    loop: Loop = typer.Option(Loop.auto, "--loop", case_sensitive=False, help="Event loop: auto is uvloop when it imports."),
) -> None:
    """Bridge this host's bus and NATS: export local topics, import remote ones (docs/federation.md)."""
    from decnet.bus.bridge.core import nats_supported

    why = nats_supported()
    if why is not None:
        _fail(why, 1)
    try:
        config = BridgeConfig(
            servers=[url.strip() for value in nats for url in value.split(",") if url.strip()],
            exports=exports, imports=imports, prefix=prefix, name=name, socket=socket,
            tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, user=user, password=read_password(password_file),
            health_interval=health_interval, log_level=log_level.value, loop=loop.value,
        )
        config.check()
    except ConfigError as error:
        _fail(str(error), 2)
    from decnet.bus.bridge.worker import run

    raise typer.Exit(run(config))
