"""``decnet bus``: run the broker; ``pub``, ``sub`` and ``stats`` talk to it.

Exit codes: 0 success; 1 the broker is unavailable or could not start;
2 a usage error (bad option, topic, pattern or JSON).
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from typing import Optional

import orjson
import typer

from decnet.bus import constants as C

bus_app = typer.Typer(
    help="The host-local event bus. Without a sub-command: run the broker.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SOCKET_HELP = "The broker's UNIX socket. Default: $DECNET_BUS_SOCKET, else /run/decnet/bus.sock if /run/decnet exists, else ~/.decnet/bus.sock."


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"decnet: {message}", err=True)
    raise typer.Exit(code)


def _octal(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an octal mode such as 0660") from None
    if not 0 <= mode <= 0o777:
        raise typer.BadParameter(f"{value!r} is not a permission mode (0000..0777)")
    return mode


@bus_app.callback()
def broker(
    ctx: typer.Context,
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
    loop: str = typer.Option("auto", "--loop", help="Event loop: auto (uvloop when it imports), uvloop or asyncio."),
    group: str = typer.Option("decnet", "--group", help="Group given the socket; who is in it may use the bus. A missing group is a warning."),
    mode: str = typer.Option("0660", "--mode", help="Permission mode of the socket file, octal."),
    max_payload: int = typer.Option(C.DEFAULT_MAX_PAYLOAD, "--max-payload", min=0, max=C.MAX_LEN_FIELD, help="Largest event body accepted, in bytes; announced in HELLO."),
    queue_limit: int = typer.Option(C.DEFAULT_QUEUE_LIMIT, "--queue-limit", min=1, help="Bytes queued per connection; beyond it the oldest events are dropped and counted."),
    health_interval: float = typer.Option(C.DEFAULT_HEALTH_INTERVAL, "--health-interval", min=0.01, help="Seconds between heartbeats on system.bus.health."),
    max_subscriptions: int = typer.Option(C.DEFAULT_MAX_SUBSCRIPTIONS, "--max-subscriptions", min=1, help="Patterns one connection may subscribe to."),
    max_connections: int = typer.Option(C.DEFAULT_MAX_CONNECTIONS, "--max-connections", min=1, help="Clients connected at once."),
    max_stall_ms: float = typer.Option(C.DEFAULT_MAX_STALL * 1000, "--max-stall-ms", min=0, max=1000, help="Longest a publisher is not read while a subscriber it feeds is past 75% of its queue but reading; 0 never holds publishers (drop-oldest only)."),
    hello_timeout: float = typer.Option(C.HELLO_TIMEOUT, "--hello-timeout", min=0.05, max=60, help="Seconds a new connection has to send HELLO before it is closed (ERR hello_timeout)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the broker (one per host; systemd runs it as decnet-bus.service)."""
    if ctx.invoked_subcommand is not None:
        return
    from decnet.bus.worker import Options, run

    if loop not in ("auto", "uvloop", "asyncio"):
        raise typer.BadParameter("must be auto, uvloop or asyncio", param_hint="--loop")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    options = Options(
        socket=socket,
        loop=loop,
        group=group,
        mode=_octal(mode),
        max_payload=max_payload,
        queue_limit=queue_limit,
        health_interval=health_interval,
        max_subscriptions=max_subscriptions,
        max_connections=max_connections,
        max_stall=max_stall_ms / 1000,
        hello_timeout=hello_timeout,
        log_level=log_level,
    )
    raise typer.Exit(run(options))


def _run(coro) -> None:
    from decnet.bus.worker import loop_factory

    try:
        with asyncio.Runner(loop_factory=loop_factory("auto")[1]) as runner:
            runner.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _connected(socket: Optional[str], name: str):
    from decnet.bus import BusUnavailable, UnixBus

    bus = UnixBus(socket, name=name)
    try:
        await bus.connect()
    except BusUnavailable as error:
        await bus.close()
        fail(str(error))
    return bus


@bus_app.command()
def pub(
    topic: str = typer.Argument(..., help="Topic to publish on, e.g. decky.d1.state."),
    payload: Optional[str] = typer.Argument(None, help="JSON payload. Without it, each line of stdin is one event."),
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
) -> None:
    """Publish events; exits once the broker has them."""
    from decnet.bus import BusError, TopicError, check_topic

    try:
        check_topic(topic)
    except TopicError as error:
        fail(str(error), 2)
    if payload is not None:
        docs = [(1, payload)]
    else:
        docs = [(n, line) for n, line in enumerate(sys.stdin, 1) if line.strip()]
    events = []
    for number, text in docs:
        try:
            events.append(orjson.loads(text))
        except orjson.JSONDecodeError as error:
            where = "payload" if payload is not None else f"stdin line {number}"
            fail(f"{where} is not JSON: {error}", 2)

    async def main() -> None:
        bus = await _connected(socket, "decnet bus pub")
        try:
            for event in events:
                await bus.publish(topic, event)
            await bus.flush()
        except BusError as error:
            fail(str(error))
        finally:
            await bus.close()
        if bus.dropped:
            fail(f"{bus.dropped} of {len(events)} events were dropped: the broker went away")

    _run(main())


@bus_app.command()
def sub(
    pattern: str = typer.Argument(..., help="Pattern: '*' is one token, a final '>' the rest; '>' is everything."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Exit after this many events."),
    socket: Optional[str] = typer.Option(None, "--socket", help=SOCKET_HELP),
) -> None:
    """Print events as JSON lines: {"topic", "payload", "time"}."""
    from decnet.bus import TopicError, check_pattern

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
    from decnet.bus.topics import SYSTEM_BUS_HEALTH

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

    result: dict = {}

    async def keep() -> None:
        result.update(await main())

    _run(keep())
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
