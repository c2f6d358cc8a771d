"""``decnet bus``: run the broker; ``pub``, ``sub`` and ``stats`` talk to it.

Exit codes: 0 success; 1 the broker is unavailable (the message says why:
no socket, refused, permission denied) or could not start; 2 a usage error
(bad option, topic, pattern or JSON, a reserved topic, a payload over the
limit), found before connecting whether or not a broker runs.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import inspect
import sys
from typing import Any, Coroutine, Optional, TypeVar

import orjson
import typer

from decnet.bus import BusError, BusUnavailable, TopicError, UnixBus, check_pattern, worker
from decnet.bus import constants as C
from decnet.bus.base import check_publish_topic
from decnet.bus.config import FIELD_TYPES, ConfigError
from decnet.bus.topics import SYSTEM_BUS_HEALTH
from decnet.cli.options import FIELDS, cli_default, cli_help, cli_reason, cli_type, config_from_cli, flag, is_switch

T = TypeVar("T")

bus_app = typer.Typer(
    help="The host-local event bus. Without a sub-command: run the broker.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and one-line errors; rich's import is 2/5 of `decnet --help`
)

SOCKET_HELP = FIELDS["socket"].metadata["help"]


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"decnet: {message}", err=True)
    raise typer.Exit(code)


def broker(ctx: typer.Context, **values: Any) -> None:
    """Run the broker (one per host; systemd runs it as decnet-bus.service)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        config = config_from_cli(values)
    except ConfigError as error:
        raise typer.BadParameter(cli_reason(error, values), param_hint=f"'{flag(FIELDS[error.field])}'") from None
    raise typer.Exit(worker.run(config))


def _broker_signature() -> inspect.Signature:
    """``broker``'s options: one per ``BrokerConfig`` field, with the field's default, bounds and help."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for f in FIELDS.values():
        choices = isinstance(FIELD_TYPES[f.name], type) and issubclass(FIELD_TYPES[f.name], enum.Enum)
        default = typer.Option(
            cli_default(f), flag(f), help=cli_help(f), hidden=f.metadata["hidden"], metavar=f.metadata["metavar"],
            case_sensitive=not choices, show_default=not is_switch(f),
        )
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=cli_type(f)))
    return inspect.Signature(params)


broker.__signature__ = _broker_signature()  # type: ignore[attr-defined]
broker.__annotations__ = {p.name: p.annotation for p in broker.__signature__.parameters.values()}  # type: ignore[attr-defined]
bus_app.callback()(broker)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the client's loop (uvloop when it imports); its result."""
    try:
        with asyncio.Runner(loop_factory=worker.loop_factory("auto")[1]) as runner:
            return runner.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _connected(socket: Optional[str], name: str):
    bus = UnixBus(socket, name=name)
    try:
        await bus.connect()
    except BusUnavailable as error:
        await bus.close()
        fail(str(error))
    return bus


def _json_error(where: str, text: str, error: orjson.JSONDecodeError) -> str:
    """``where`` is not JSON, at one position: a line of stdin is one line, so
    only the column is told; a multi-line argument gets its line too."""
    at = f"line {error.lineno}, column {error.colno}" if "\n" in text.strip() else f"column {error.colno}"
    return f"{where} is not JSON ({at}: {error.msg})"


@bus_app.command()
def pub(
    topic: str = typer.Argument(..., help="Topic to publish on, e.g. decky.d1.state (not system.bus.*: the broker's own)."),
    payload: Optional[str] = typer.Argument(None, help="JSON payload. Without it, each line of stdin is one event."),
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
) -> None:
    """Publish events; exits once the broker has them.

    Every event is checked before any is sent (topic, JSON, size against the
    broker's limit): one mistake, and nothing is published (exit 2).
    """
    try:
        check_publish_topic(topic)
    except TopicError as error:
        fail(str(error), 2)
    if payload is not None:
        docs = [("the payload", payload)]
    else:
        if sys.stdin.isatty():
            typer.echo("decnet: reading events from stdin, one JSON value per line; Ctrl-D ends", err=True)
        docs = [(f"stdin line {n}", line) for n, line in enumerate(sys.stdin, 1) if line.strip()]
    nothing = "; nothing was published" if len(docs) > 1 else ""
    bodies = []
    for where, text in docs:
        try:
            bodies.append((where, orjson.dumps(orjson.loads(text))))
        except orjson.JSONDecodeError as error:
            fail(_json_error(where, text, error) + nothing, 2)

    def check_sizes(limit: int, whose: str) -> None:
        for where, body in bodies:
            if len(body) > limit:
                fail(f"{where}: payload of {len(body)} bytes exceeds {whose} limit of {limit} bytes{nothing}", 2)

    async def main() -> None:
        bus = UnixBus(socket, name="decnet bus pub")
        try:
            await bus.connect()
            # The HELLO reply, with the broker's own limit, has come by the PONG.
            await bus.flush()
        except BusUnavailable as error:
            await bus.close()
            check_sizes(C.DEFAULT_MAX_PAYLOAD, "the default")  # without a broker, the limit known
            fail(str(error))
        try:
            check_sizes(bus.max_payload, "the broker's")
            for _, body in bodies:
                await bus.publish(topic, orjson.Fragment(body))
            await bus.flush()
        except BusError as error:
            fail(str(error))
        finally:
            await bus.close()
        if bus.dropped:
            fail(f"{bus.dropped} of {len(bodies)} events were dropped: the broker went away")

    _run(main())


@bus_app.command()
def sub(
    pattern: str = typer.Argument(..., help="Pattern: '*' is one token, a final '>' the rest; '>' is everything."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Exit after this many events."),
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
) -> None:
    """Print events as JSON lines: {"topic", "payload", "time"}."""
    try:
        check_pattern(pattern)
    except TopicError as error:
        fail(str(error), 2)

    async def main() -> None:
        bus = await _connected(socket, "decnet bus sub")
        seen = 0
        out = sys.stdout
        try:
            async with bus.subscribe(pattern) as subscription:
                async for event in subscription:
                    if event.gap:
                        typer.echo(f"decnet: gap ({event.reason}): events may have been lost", err=True)
                        continue
                    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
                    line = orjson.dumps({"topic": event.topic, "payload": event.payload, "time": now})
                    out.write(line.decode() + "\n")
                    out.flush()
                    seen += 1
                    if count is not None and seen >= count:
                        break
        finally:
            await bus.close()

    _run(main())


@bus_app.command()
def stats(
    as_json: bool = typer.Option(False, "--json", help="Print the heartbeat as one JSON object."),
    timeout: float = typer.Option(15.0, "--timeout", min=0.1, help="Seconds to wait for the next heartbeat."),
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
) -> None:
    """Wait for the broker's next heartbeat (system.bus.health) and print it."""
    async def main() -> dict:
        bus = await _connected(socket, "decnet bus stats")
        try:
            async with bus.subscribe(SYSTEM_BUS_HEALTH) as subscription:
                deadline = asyncio.get_running_loop().time() + timeout
                while True:
                    left = deadline - asyncio.get_running_loop().time()
                    try:
                        event = await asyncio.wait_for(subscription.__anext__(), max(left, 0))
                    except asyncio.TimeoutError:
                        fail(f"no heartbeat from the broker on {bus.path} within {timeout:g} s")
                    if not event.gap:
                        return {"socket": str(bus.path), **event.payload}
        finally:
            await bus.close()

    result = _run(main())
    if as_json:
        typer.echo(orjson.dumps(result).decode())
        return
    typer.echo(render_stats(result))


def render_stats(health: dict) -> str:
    """The heartbeat as a table for people."""
    uptime = int(health.get("uptime_s", 0))
    rows = [
        ("socket", health.get("socket", "?")),
        ("version", health.get("version", "?")),
        ("uptime", f"{uptime // 3600}h {uptime // 60 % 60:02d}m {uptime % 60:02d}s"),
        ("loop", health.get("loop", "?")),
        ("hot path", "compiled" if health.get("accelerated") else "pure Python"),
        ("connections", f"{health.get('connections', 0):,}"),
        ("subscriptions", f"{health.get('subscriptions', 0):,}"),
        ("published", f"{health.get('published', 0):,}"),
        ("delivered", f"{health.get('delivered', 0):,}"),
        ("dropped", f"{health.get('dropped', 0):,}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# `decnet bus bridge` lives in its own module (decnet/cli/bridge.py).
from decnet.cli.bridge import bridge as _bridge  # noqa: E402

bus_app.command("bridge")(_bridge)
