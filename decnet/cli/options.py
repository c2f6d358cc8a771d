"""The broker's command line, spelled from ``BrokerConfig``'s fields: each
field's option name, its value as typed and as the field holds it, and a
reading of a plain ``decnet bus [--option value]...`` that needs no typer.

That reading exists for memory: typer parses with pydantic, and the two stay
in the broker's process for its whole life (13 MiB of its 39 MiB idle RSS,
measured). It takes only the well-formed case; anything else (``--help``, a
sub-command, an unknown option, a value it does not read exactly like typer
would, a value out of bounds) goes to the typer command, which parses the
same options generated from the same fields and explains the mistake.
"""

from __future__ import annotations

import enum
import re
from dataclasses import Field, fields
from typing import Any, Optional

from decnet.bus.config import FIELD_TYPES, BrokerConfig, ConfigError, bounds

FIELDS: dict[str, Field] = {f.name: f for f in fields(BrokerConfig)}
# Only plain digits: typer (pydantic) reads more spellings ('1_000', ' 5'),
# and those go to it.
_DIGITS = {int: re.compile(r"[0-9]+\Z"), float: re.compile(r"[0-9]+(\.[0-9]+)?\Z")}


def flag(f: Field) -> str:
    """The option that sets ``f``: ``--queue-limit`` for ``queue_limit`` unless the field names another."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def is_switch(f: Field) -> bool:
    """A bool field is an option without a value that turns its default over."""
    return FIELD_TYPES[f.name] is bool


def cli_type(f: Field) -> Any:
    """The type the command line reads for ``f``."""
    if is_switch(f):
        return bool
    if f.metadata["octal"]:
        return str
    kind = FIELD_TYPES[f.name]
    return Optional[kind] if f.default is None else kind


def cli_default(f: Field) -> Any:
    """``f``'s default as the command line shows it."""
    if is_switch(f):
        return False
    if f.metadata["octal"]:
        return f"{f.default:04o}"
    return f.default * f.metadata["scale"] if f.metadata["scale"] != 1 else f.default


def cli_help(f: Field) -> str:
    """``f``'s help, with its bounds in command-line units."""
    m = f.metadata
    if m["min"] is None and m["max"] is None:
        return m["help"]
    return f"{m['help']} Range: {bounds(f, m['scale']).removeprefix('within ')}."


def from_cli(f: Field, value: Any) -> Any:
    """A value as the command line gave it for ``f``, as the field holds it."""
    if is_switch(f):
        return not f.default if value else f.default
    if f.metadata["octal"]:
        try:
            return int(value, 8)
        except (TypeError, ValueError):
            raise ConfigError(f.name, f"{value!r} is not an octal mode such as 0660") from None
    if f.metadata["scale"] != 1:
        # The default as given, not through a round trip that could change its last bit.
        return f.default if value == cli_default(f) else value / f.metadata["scale"]
    return value


def config_from_cli(values: dict[str, Any]) -> BrokerConfig:
    """The ``BrokerConfig`` of the command-line values by field name; ``ConfigError`` when one is out of bounds."""
    return BrokerConfig(**{name: from_cli(f, values[name]) for name, f in FIELDS.items()})


def cli_reason(error: ConfigError, values: dict[str, Any]) -> str:
    """``error``'s reason in the units the command line used."""
    f = FIELDS[error.field]
    scale = f.metadata["scale"]
    if scale != 1 and isinstance(values.get(f.name), (int, float)):
        return f"must be {bounds(f, scale)}, got {values[f.name]:g}"
    return error.reason


def read_broker_argv(argv: list[str]) -> Optional[BrokerConfig]:
    """The config of ``argv`` when it is exactly ``bus [--option value | --option=value]...``
    with every value valid, read without typer; None for anything else."""
    if not argv or argv[0] != "bus":
        return None
    by_flag = {flag(f): f for f in FIELDS.values()}
    values = {name: cli_default(f) for name, f in FIELDS.items()}
    seen: set[str] = set()
    args = iter(argv[1:])
    for arg in args:
        name, eq, value = arg.partition("=")
        f = by_flag.get(name)
        if f is None or f.name in seen:
            return None
        seen.add(f.name)
        if is_switch(f):
            if eq:
                return None
            values[f.name] = True
            continue
        if not eq:
            value = next(args, None)
            if value is None or value.startswith("-"):
                return None
        parsed = _read_value(f, value)
        if parsed is None:
            return None
        values[f.name] = parsed
    try:
        return config_from_cli(values)
    except ConfigError:
        return None


def _read_value(f: Field, value: str) -> Any:
    if f.metadata["octal"]:
        return value
    kind = FIELD_TYPES[f.name]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value) if value in {member.value for member in kind} else None
    if kind in _DIGITS:
        return kind(value) if _DIGITS[kind].match(value) else None
    return value
