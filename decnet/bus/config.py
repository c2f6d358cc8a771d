"""Where the broker's socket is (docs/protocol.md §1), and ``BrokerConfig``: every broker
option defined once, with its default, its bounds and its help.

The command line (decnet/cli/options.py) is generated from the fields below:
a new option is one field here, nothing else.
"""

from __future__ import annotations

import enum
import os
import typing
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from . import constants as C

ENV_SOCKET = "DECNET_BUS_SOCKET"
ENV_ENABLED = "DECNET_BUS_ENABLED"
RUN_DIR = Path("/run/decnet")


#: Why a socket path was chosen, as ``socket_choice`` says it.
GIVEN, FROM_ENV, RUN_DIR_EXISTS, DEV_DEFAULT = "given", "env", "run_dir", "default"

def describe_source(source: str) -> str:
    """Why ``socket_choice`` chose its path, in words."""
    return {
        GIVEN: "given with --socket",
        FROM_ENV: f"from ${ENV_SOCKET}",
        RUN_DIR_EXISTS: f"{RUN_DIR} exists",
        DEV_DEFAULT: f"the development default: {RUN_DIR} does not exist",
    }[source]


def socket_choice(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The socket path and why it is that one: ``explicit`` (``GIVEN``), else
    ``$DECNET_BUS_SOCKET`` (``FROM_ENV``), else /run/decnet/bus.sock when
    /run/decnet exists (``RUN_DIR_EXISTS``, production), else
    ~/.decnet/bus.sock (``DEV_DEFAULT``); ``describe_source`` says it in words."""
    if explicit:
        return Path(explicit), GIVEN
    env = os.environ.get(ENV_SOCKET)
    if env:
        return Path(env), FROM_ENV
    if RUN_DIR.is_dir():
        return RUN_DIR / "bus.sock", RUN_DIR_EXISTS
    return Path.home() / ".decnet" / "bus.sock", DEV_DEFAULT


def socket_path(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$DECNET_BUS_SOCKET``, else /run/decnet/bus.sock when
    /run/decnet exists (production), else ~/.decnet/bus.sock (development)."""
    return socket_choice(explicit)[0]


class Loop(enum.StrEnum):
    """The event loop the broker runs on; ``auto`` is uvloop when it imports."""

    auto = "auto"
    uvloop = "uvloop"
    asyncio = "asyncio"


class LogLevel(enum.StrEnum):
    """The broker's logging threshold."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class ConfigError(ValueError):
    """A broker option out of its bounds or choices. ``field`` is the
    ``BrokerConfig`` field; ``reason`` says what is wrong, in one line."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    flag: str | None = None,
    scale: int = 1,
    octal: bool = False,
    hidden: bool = False,
    metavar: str | None = None,
) -> Any:
    """A ``BrokerConfig`` field and how the command line spells it.

    ``flag`` is the CLI option (default ``--field-name``); ``scale`` is CLI units
    per field unit (``--max-stall-ms`` for seconds); ``octal`` writes an int as
    an octal string; a bool field defaulting to True becomes a flag that turns
    it off. ``min``/``max`` are inclusive, in field units; ``metavar`` names
    the value in ``--help``."""
    meta = {"help": help, "min": min, "max": max, "flag": flag, "scale": scale, "octal": octal, "hidden": hidden, "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class BrokerConfig:
    """Every option of ``decnet bus``: the CLI builds one, ``Broker`` and the
    worker read it. Durations are in seconds, sizes in bytes. Construction
    checks every bound and choice and raises ``ConfigError``."""

    socket: Optional[str] = option(
        None, "The broker's UNIX socket. Default: $DECNET_BUS_SOCKET, else /run/decnet/bus.sock if /run/decnet exists, else ~/.decnet/bus.sock.", metavar="PATH"
    )
    loop: Loop = option(Loop.auto, "Event loop: auto is uvloop when it imports, else asyncio.")
    group: str = option("decnet", "Group given the socket; who is in it may use the bus. A missing group is a warning.", metavar="NAME")
    mode: int = option(0o660, "Permission mode of the socket file, octal.", min=0, max=0o777, octal=True, metavar="OCTAL")
    max_payload: int = option(C.DEFAULT_MAX_PAYLOAD, "Largest event body accepted, in bytes; announced in HELLO.", min=0, max=C.MAX_LEN_FIELD, metavar="BYTES")
    queue_limit: int = option(8 * 1024 * 1024, "Bytes queued per connection; beyond it the oldest events are dropped and counted.", min=1, metavar="BYTES")
    health_interval: float = option(5.0, "Seconds between heartbeats on system.bus.health.", min=0.01, metavar="SECONDS")
    max_subscriptions: int = option(10_000, "Patterns one connection may subscribe to.", min=1, metavar="N")
    max_connections: int = option(4096, "Clients connected at once.", min=1, metavar="N")
    max_stall: float = option(
        0.005,
        "Longest a publisher is not read while a subscriber it feeds is past 75% of its queue but reading; 0 never holds publishers (drop-oldest only).",
        min=0,
        max=1,
        flag="--max-stall-ms",
        scale=1000,
        metavar="MS",
    )
    hello_timeout: float = option(2.0, "Seconds a new connection has to send HELLO before it is closed (ERR hello_timeout).", min=0.05, max=60, metavar="SECONDS")
    log_level: LogLevel = option(LogLevel.info, "Log threshold.")
    batch_writes: bool = option(
        True,
        "Bench only: write each delivery on its own instead of one write per connection per read; exists to measure what batching buys.",
        flag="--unbatched",
        hidden=True,
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = FIELD_TYPES[f.name]
            if isinstance(kind, type) and issubclass(kind, enum.Enum):
                object.__setattr__(self, f.name, _choice(f.name, kind, value))
            elif kind is bool:
                if not isinstance(value, bool):
                    raise ConfigError(f.name, f"must be True or False, got {value!r}")
            elif kind in (int, float):
                _check_number(f, value, kind)
            elif not (value is None and f.default is None) and not isinstance(value, str):
                raise ConfigError(f.name, f"must be a string, got {value!r}")


def _choice(name: str, kind: type[enum.Enum], value: Any) -> enum.Enum:
    try:
        return kind(value.lower() if isinstance(value, str) else value)
    except ValueError:
        names = ", ".join(member.value for member in kind)
        raise ConfigError(name, f"must be one of {names}, got {value!r}") from None


def _check_number(f: Field, value: Any, kind: type) -> None:
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or value != value:  # NaN passes every bound
        raise ConfigError(f.name, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    low, high = f.metadata["min"], f.metadata["max"]
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f.name, f"must be {bounds(f)}, got {shown(f, value)}")


def shown(f: Field, value: float, scale: int = 1) -> str:
    """A value of field ``f`` as the command line writes it (``scale``: CLI units per field unit)."""
    if f.metadata["octal"]:
        return f"{value:04o}"
    return str(value * scale) if isinstance(value, int) else f"{value * scale:g}"


def bounds(f: Field, scale: int = 1) -> str:
    """A field's bounds as people read them: ``within 0..1000``, ``at least 1``."""
    low, high = f.metadata["min"], f.metadata["max"]
    if low is not None and high is not None:
        return f"within {shown(f, low, scale)}..{shown(f, high, scale)}"
    return f"at least {shown(f, low, scale)}" if low is not None else f"at most {shown(f, high, scale)}"


def _field_types() -> dict[str, Any]:
    """Each field's type, ``Optional[X]`` read as ``X`` (the annotations are strings)."""
    types = {}
    for name, hint in typing.get_type_hints(BrokerConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        types[name] = args[0] if typing.get_origin(hint) is typing.Union else hint
    return types


FIELD_TYPES: dict[str, Any] = _field_types()
