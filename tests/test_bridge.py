"""``decnet bus bridge`` end to end: simulated hosts (one broker and one
bridge process each, on separate sockets) joined by real ``nats-server``
processes on 127.0.0.1: exactly-once delivery with no loops, byte-identical
payloads, the mapping, faults (NATS killed, a cluster node killed, the local
broker killed), mutual TLS and NATS permissions.

Every wait is on an event: a bridge's heartbeat (``live``, counters), a gap
notice, or the events themselves; the bridges beat every 0.1 s here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import orjson
import pytest

from decnet.bus import UnixBus
from decnet.bus.testing import BrokerProcess
from decnet.bus.testing.federation import BridgeProcess, NatsServer, free_port, make_certs, nats_cluster, nats_server_path

from stress import report, scale

nats = pytest.importorskip("nats", reason="nats-py is not installed (pip install -e '.[test]')")
if nats_server_path() is None:
    pytest.skip("nats-server is not installed (Debian: apt-get install nats-server); the bridge's end-to-end "
                "tests need it", allow_module_level=True)

WAIT = 20.0
BEAT = "0.1"


class Host:
    """One simulated host: a broker on its own socket and its bridge."""

    def __init__(self, stack: contextlib.ExitStack, sockdir, name: str, loop: str) -> None:
        self.name = name
        self.loop = loop
        self.path = sockdir / f"{name}.sock"
        self.broker = BrokerProcess(self.path, "--health-interval", "0.2", loop=loop).start()
        stack.callback(lambda: self.broker.stop())
        self.bridge = None
        self.stack = stack

    def start_bridge(self, nats_url: str, *args: str, env=None) -> BridgeProcess:
        self.bridge = BridgeProcess(self.path, nats_url, "--name", self.name, "--health-interval", BEAT, *args,
                                    loop=self.loop, env=env).start()
        bridge = self.bridge
        self.stack.callback(lambda: _stopped_cleanly(bridge))
        return bridge

    def bridge_rss(self) -> int:
        import psutil

        return psutil.Process(self.bridge.pid).memory_info().rss

    def restart_broker(self) -> None:
        self.broker = BrokerProcess(self.path, "--health-interval", "0.2", loop=self.loop).start()
        broker = self.broker
        self.stack.callback(lambda: broker.stop())


def _stopped_cleanly(bridge: BridgeProcess) -> None:
    code = bridge.stop()
    assert code == 0, f"the bridge exited with {code} on SIGTERM:\n{bridge.output()}"
    assert "Traceback" not in bridge.output(), bridge.output()


@pytest.fixture
def fleet(sockdir, loop_name):
    """``fleet("a", "b")``: one host per name (brokers started, bridges not yet)."""
    with contextlib.ExitStack() as stack:
        def make(*names: str) -> list[Host]:
            return [Host(stack, sockdir, name, loop_name) for name in names]
        make.stack = stack
        yield make


def export_a_import_b(fleet, url: str) -> list:
    """Hosts a and b with their bridges on ``url``: a exports ``decky.>``, b imports it."""
    a, b = fleet("a", "b")
    a.start_bridge(url, "--export", "decky.>")
    b.start_bridge(url, "--import", "decky.>")
    return [a, b]


async def health(path, name: str, condition=lambda h: h["live"], timeout: float = WAIT) -> dict:
    """The first heartbeat of bridge ``name``, seen on the broker at ``path``, that meets ``condition``."""
    async with UnixBus(path, name="test health") as bus:
        return await health_on(bus, name, condition, timeout)


async def health_on(bus, name: str, condition=lambda h: h["live"], timeout: float = WAIT) -> dict:
    last = None
    async with bus.subscribe(f"system.bridge.{name}.health") as sub:
        try:
            async with asyncio.timeout(timeout):
                async for evt in sub:
                    if not evt.gap:
                        last = evt.payload
                        if condition(last):
                            return last
        except TimeoutError:
            pass
    raise AssertionError(f"no heartbeat of bridge {name} met the condition within {timeout} s; last: {last}")


async def next_event(sub, timeout: float = WAIT):
    while True:
        evt = await asyncio.wait_for(sub.__anext__(), timeout)
        if not evt.gap:
            return evt


async def raw_nats(url: str, subject: str, **options):
    """A plain nats-py client subscribed to ``subject``: (client, received messages)."""
    got: list = []

    async def on_msg(msg):
        got.append(msg)

    nc = await nats.connect(url, allow_reconnect=False, **options)
    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    return nc, got


async def wait_for(condition, what: str, timeout: float = WAIT) -> None:
    """Until ``condition()``; the events it waits for arrive on other tasks of this loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def body(host: int, n: int, last: bool = False) -> bytes:
    # Spacing orjson would never write: a decode/encode on the way would change these bytes.
    return b'{ "h" : %d,  "n": %d , "last": %s }' % (host, n, b"true" if last else b"false")


@pytest.mark.parametrize("n, exports, imports", [
    (2, ["decky.>", "decky.*.state"], ["decky.>", "decky.*.state"]),
    (3, ["decky.>"], ["decky.>"]),
], ids=["2-hosts-overlapping-patterns", "3-hosts"])
def test_every_subscriber_on_every_host_gets_each_event_exactly_once(fleet, run, n, exports, imports):
    count = scale(100, 5_000)
    with NatsServer() as server:
        hosts = fleet(*(f"h{i}" for i in range(n)))
        args = [a for p in exports for a in ("--export", p)] + [a for p in imports for a in ("--import", p)]
        for host in hosts:
            host.start_bridge(server.url, *args)

        async def main():
            raw, on_nats = await raw_nats(server.url, "decnet.decky.>")
            buses = []
            subs = []  # (host index, pattern, Subscription, events)
            for i, host in enumerate(hosts):
                await health(host.path, host.name)
                for pattern in ("decky.>", "decky.*.state"):
                    bus = UnixBus(host.path, name=f"test sub {pattern}")
                    buses.append(bus)
                    sub = bus.subscribe(pattern, maxsize=100_000)
                    await sub.__aenter__()
                    subs.append((i, pattern, sub, []))
            publishers = [UnixBus(h.path, name="test pub") for h in hosts]
            for n_ev in range(count):
                for i, pub in enumerate(publishers):
                    kind = "state" if n_ev % 2 == 0 else "traffic"
                    await pub.publish_raw(f"decky.h{i}-x.{kind}", body(i, n_ev))
            for i, pub in enumerate(publishers):  # the last event of each host is a state: every sub sees it
                await pub.publish_raw(f"decky.h{i}-x.state", body(i, count, last=True))
                await pub.flush()

            async def collect(sub, events):
                lasts = 0
                while lasts < len(hosts):
                    evt = await next_event(sub)
                    events.append(evt)
                    lasts += evt.payload["last"]

            await asyncio.wait_for(asyncio.gather(*(collect(sub, ev) for _, _, sub, ev in subs)), WAIT)
            expected_nats = len(hosts) * (count + 1)
            await wait_for(lambda: len(on_nats) >= expected_nats, "every event on NATS")
            beats = [await health(h.path, h.name, lambda b: b["exported"] == count + 1) for h in hosts]
            for _, _, sub, _ in subs:
                await sub.close()
            for bus in buses + publishers:
                await bus.close()
            await raw.flush()
            await raw.close()
            return subs, on_nats, beats

        subs, on_nats, beats = run(main())

    for i, pattern, _, events in subs:
        per_host = {}
        for evt in events:
            h, m = evt.payload["h"], evt.payload["n"]
            assert evt.raw == body(h, m, m == count), "payload bytes changed on the way"
            per_host.setdefault(h, []).append(m)
        wanted = range(0, count + 1) if pattern == "decky.>" else [m for m in range(count + 1) if m % 2 == 0 or m == count]
        for h in range(len(hosts)):
            # Exactly once, and in the publisher's order.
            assert per_host.get(h) == list(wanted), f"host h{i} {pattern}: events of h{h} not exactly once in order"
    assert len(on_nats) == len(hosts) * (count + 1), "a raw NATS subscriber saw an event other than once"
    seen = {(m.subject, m.data) for m in on_nats}
    assert len(seen) == len(on_nats)
    numbers: dict = {}
    for m in on_nats:
        h = orjson.loads(m.data)["h"]
        assert m.headers["Decnet-Origin"] == f"h{h}" and m.subject.startswith(f"decnet.decky.h{h}-x.")
        # The header block the export pump writes itself parses as these two headers, nothing else.
        assert set(m.headers) == {"Decnet-Origin", "Decnet-Seq"}, m.headers
        epoch, _, n = m.headers["Decnet-Seq"].partition(".")
        assert len(epoch) == 16 and int(epoch, 16) >= 0 and n.isdigit(), m.headers
        numbers.setdefault(m.headers["Decnet-Origin"], []).append(int(n))
    for origin, ns in numbers.items():
        assert ns == sorted(set(ns)), f"{origin}: sequence numbers not increasing"
    for beat in beats:
        assert beat["looped"] == 0 and beat["dropped_export"] == 0 and beat["dropped_import"] == 0, beat
        assert beat["imported"] == (len(hosts) - 1) * (count + 1), beat
    report(f"bridge exactly-once, {len(hosts)} hosts", events_per_host=count + 1, subscribers=len(subs))


def test_mapping_on_the_wire_prefix_wildcards_and_nothing_without_a_pattern(fleet, run):
    with NatsServer() as server:
        a, b = fleet("a", "b")
        a.start_bridge(server.url, "--prefix", "fleet.eu", "--export", "decky.*.state", "--export", "system.>")
        b.start_bridge(server.url, "--prefix", "fleet.eu", "--import", "decky.>")  # imports only

        async def main():
            raw, on_nats = await raw_nats(server.url, ">")
            await health(a.path, "a")
            await health(b.path, "b")
            async with UnixBus(a.path) as pub_a, UnixBus(b.path) as pub_b, UnixBus(b.path) as sub_bus:
                async with sub_bus.subscribe("decky.>") as sub:
                    await pub_b.publish("decky.b1.state", {"from": "b"})  # b exports nothing
                    await pub_b.flush()
                    await pub_a.publish("decky.d1.traffic", {"not": "exported"})
                    await pub_a.publish("topology.t1.status", {"not": "exported"})
                    await pub_a.publish("decky.d1.state", {"n": 1})
                    await pub_a.flush()
                    evt = await next_event(sub)
                    assert (evt.topic, evt.payload) == ("decky.b1.state", {"from": "b"})  # its own, locally
                    evt = await next_event(sub)
                    assert (evt.topic, evt.payload) == ("decky.d1.state", {"n": 1})
                # a's own heartbeat matches system.>, the broker's system.bus.health never crosses.
                await wait_for(lambda: any(m.subject == "fleet.eu.system.bridge.a.health" for m in on_nats),
                               "a's heartbeat on NATS")
                await health(a.path, "a", lambda h: h["exported"] >= 1)
                await raw.flush()
            subjects = {m.subject for m in on_nats}
            await raw.close()
            return subjects

        subjects = run(main())
    assert "fleet.eu.decky.d1.state" in subjects
    assert not {s for s in subjects if not s.startswith("fleet.eu.")} - {s for s in subjects if s.startswith("_INBOX")}
    assert not {s for s in subjects if "traffic" in s or "topology" in s or "system.bus" in s or "b1" in s}, subjects


def test_overlapping_import_patterns_deliver_once_in_order(fleet, run):
    with NatsServer() as server:
        a, b = fleet("a", "b")
        a.start_bridge(server.url, "--export", "a.>")
        b.start_bridge(server.url, "--import", "a.*.c", "--import", "a.b.*")

        async def main():
            await health(a.path, "a")
            async with UnixBus(a.path) as pub, UnixBus(b.path) as sub_bus:
                await health_on(sub_bus, "b")
                async with sub_bus.subscribe(">") as sub:
                    topics = ["a.b.c", "a.x.c", "a.b.y", "a.b.c", "a.z.z"]
                    for n, topic in enumerate(topics):
                        await pub.publish(topic, n)
                    await pub.publish("a.b.c", "end")
                    await pub.flush()
                    got = []
                    while not got or got[-1] != ("a.b.c", "end"):
                        evt = await next_event(sub)
                        if not evt.topic.startswith("system."):
                            got.append((evt.topic, evt.payload))
                beat = await health_on(sub_bus, "b", lambda h: h["imported"] == 5)
            return got, beat

        got, beat = run(main())
    assert got == [("a.b.c", 0), ("a.x.c", 1), ("a.b.y", 2), ("a.b.c", 3), ("a.b.c", "end")]
    assert beat["duplicates"] == 3, beat  # every a.b.c came twice from NATS (two subscriptions match it)


def test_an_import_that_is_not_a_decnet_topic_is_dropped_and_counted(fleet, run):
    with NatsServer() as server:
        (b,) = fleet("b")
        b.start_bridge(server.url, "--import", "decky.>")

        async def main():
            async with UnixBus(b.path) as bus:
                await health_on(bus, "b")
                async with bus.subscribe("decky.>") as sub:
                    nc = await nats.connect(server.url)
                    await nc.publish("decnet.decky.a*b.state", b"{}")
                    await nc.publish("decnet.decky.caf\u00e9.state", b"{}")
                    await nc.publish("decnet.decky.ok.state", b'{"ok":true}')
                    await nc.flush()
                    evt = await next_event(sub)
                    await nc.close()
                beat = await health_on(bus, "b", lambda h: h["invalid"] == 2)
            return evt, beat

        evt, beat = run(main())
    assert (evt.topic, evt.raw) == ("decky.ok.state", b'{"ok":true}')
    assert beat["imported"] == 1


def test_nats_killed_and_restarted_flow_resumes_and_importers_get_a_gap(fleet, run):
    with NatsServer() as server:
        a, b = export_a_import_b(fleet, server.url)

        async def main():
            await health(a.path, "a")
            async with UnixBus(a.path) as pub, UnixBus(b.path) as sub_bus:
                await health_on(sub_bus, "b")
                async with sub_bus.subscribe("decky.>") as sub, sub_bus.subscribe("system.bridge.b.gap") as gaps:
                    await pub.publish("decky.d1.state", 1)
                    assert (await next_event(sub)).payload == 1
                    for wave in range(scale(1, 10)):
                        server.kill()
                        await health_on(sub_bus, "b", lambda h: not h["connected"])
                        await pub.publish("decky.d1.state", "lost")  # nobody to take it: dropped or buffered
                        server.restart()
                        gap = await next_event(gaps)
                        assert gap.payload["reason"] == "reconnect" and gap.payload["imports"] == ["decky.>"]
                        await health(a.path, "a", lambda h: h["live"] and h["reconnects"] >= wave + 1)
                        await pub.publish("decky.d1.state", f"after {wave}")
                        await pub.flush()
                        while (evt := await next_event(sub)).payload == "lost":
                            pass
                        assert evt.payload == f"after {wave}"
                return await health_on(sub_bus, "b")

        beat = run(main())
    assert beat["reconnects"] >= 1 and beat["connected"]


def test_nats_unreachable_at_start_the_bridge_keeps_trying(fleet, run):
    port = free_port()
    server = NatsServer(port)
    try:
        a, b = export_a_import_b(fleet, server.url)

        async def main():
            async with UnixBus(a.path) as pub, UnixBus(b.path) as sub_bus:
                beat = await health_on(sub_bus, "b", lambda h: h["nats_errors"] >= 1)
                assert not beat["connected"] and b.bridge.proc.poll() is None
                await pub.publish("decky.d1.state", "dropped")  # no NATS yet: counted
                await health(a.path, "a", lambda h: h["dropped_export"] == 1)
                async with sub_bus.subscribe("decky.>") as sub, sub_bus.subscribe("system.bridge.b.gap") as gaps:
                    server.start()
                    assert (await next_event(gaps)).payload["reason"] == "connect"
                    await health(a.path, "a")
                    await pub.publish("decky.d1.state", "through")
                    assert (await next_event(sub)).payload == "through"

        run(main())
    finally:
        server.close()


def test_cluster_node_killed_flow_resumes_through_another_node(fleet, run):
    nodes = nats_cluster(3)
    try:
        for node in nodes:
            node.start()
        urls = ",".join(node.url for node in nodes)
        a, b = fleet("a", "b")
        a.start_bridge(urls, "--export", "decky.>")
        b.start_bridge(urls, "--import", "decky.>")

        async def main():
            async with UnixBus(a.path) as pub, UnixBus(b.path) as sub_bus:
                on_a = await health(a.path, "a")
                on_b = await health_on(sub_bus, "b")
                async with sub_bus.subscribe("decky.>", maxsize=100_000) as sub, \
                        sub_bus.subscribe("system.bridge.b.gap") as gaps:
                    received: list = []

                    async def read():
                        async for evt in sub:
                            if not evt.gap:
                                received.append(evt.payload)

                    reader = asyncio.ensure_future(read())
                    sent = 0

                    async def publish_until(condition, what):
                        # Interest crosses the cluster's routes on its own time: keep publishing until it shows.
                        nonlocal sent
                        deadline = time.monotonic() + WAIT
                        while not condition():
                            assert time.monotonic() < deadline, f"timed out waiting for {what}"
                            sent += 1
                            await pub.publish("decky.d1.state", sent)
                            await asyncio.sleep(0.02)

                    await publish_until(lambda: received, "the first event through the cluster")
                    doomed = {on_a["server"], on_b["server"]}
                    killed_at = time.monotonic()
                    for node in nodes:
                        if f"127.0.0.1:{node.port}" in doomed:
                            node.kill()
                    mark = sent
                    await publish_until(lambda: received and received[-1] > mark, "events after the kill")
                    resumed = time.monotonic() - killed_at
                    gap = await next_event(gaps)
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
                    assert received == sorted(received) and len(set(received)) == len(received)
                    after_a = await health(a.path, "a")
                    assert after_a["server"] not in doomed
                    return resumed, gap.payload, len(doomed)

        resumed, gap, killed = run(main())
    finally:
        for node in nodes:
            node.close()
    assert gap["reason"] == "reconnect"
    report("bridge cluster failover", nodes_killed=killed, resumed_s=round(resumed, 3))
    assert resumed < 10.0, f"flow resumed {resumed:.2f} s after the node died"


def test_local_broker_killed_and_restarted(fleet, run):
    with NatsServer() as server:
        a, b = fleet("a", "b")
        # a's own heartbeat and gap cross too, so b's side sees them while a's broker is down.
        a.start_bridge(server.url, "--export", "decky.>", "--export", "system.bridge.>", "--import", "decky.>")
        b.start_bridge(server.url, "--export", "decky.>", "--import", "decky.>", "--import", "system.bridge.>")

        async def main():
            await health(a.path, "a")
            async with UnixBus(b.path) as bus_b:
                await health_on(bus_b, "b")
                async with bus_b.subscribe("system.bridge.a.gap") as a_gaps, bus_b.subscribe("decky.>") as on_b:
                    a.broker.kill()
                    await health_on(bus_b, "a", lambda h: not h["local_connected"])
                    for n in range(5):
                        await bus_b.publish("decky.b1.state", n)  # a's bridge has nowhere to put them
                    await health_on(bus_b, "a", lambda h: h["dropped_import"] == 5)
                    a.restart_broker()
                    gap = await next_event(a_gaps)
                    assert (gap.payload["reason"], gap.payload["lost"]) == ("local", 5)
                    async with UnixBus(a.path) as bus_a:
                        await health_on(bus_a, "a")
                        async with bus_a.subscribe("decky.>") as on_a:
                            await bus_b.publish("decky.b1.state", "to a")
                            assert (await next_event(on_a)).payload == "to a"
                            await bus_a.publish("decky.a1.state", "to b")
                            evt = await next_event(on_b)
                            while evt.payload != "to b":
                                evt = await next_event(on_b)

        run(main())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    try:
        return make_certs(tmp_path_factory.mktemp("certs"))
    except Exception as error:  # no openssl here
        pytest.skip(f"cannot make certificates: {error}")


def test_mutual_tls_accepted_and_refused(fleet, run, certs):
    tls = (f"tls {{ cert_file: \"{certs['server_cert']}\"\n key_file: \"{certs['server_key']}\"\n"
           f" ca_file: \"{certs['ca']}\"\n verify: true\n timeout: 2 }}")
    with NatsServer(config=tls) as server:
        good, rogue, anonymous = fleet("good", "rogue", "anonymous")
        good.start_bridge(server.url, "--export", "decky.>", "--import", "decky.>", "--tls-ca", str(certs["ca"]),
                          "--tls-cert", str(certs["client_cert"]), "--tls-key", str(certs["client_key"]))
        rogue.start_bridge(server.url, "--import", "decky.>", "--tls-ca", str(certs["ca"]),
                           "--tls-cert", str(certs["rogue_cert"]), "--tls-key", str(certs["rogue_key"]))
        anonymous.start_bridge(server.url, "--import", "decky.>", "--tls-ca", str(certs["ca"]))

        async def main():
            beat = await health(good.path, "good")
            assert beat["connected"] and beat["server"] == f"127.0.0.1:{server.port}"
            for host in (rogue, anonymous):
                refused = await health(host.path, host.name, lambda h: h["nats_errors"] >= 2)
                assert not refused["connected"] and host.bridge.proc.poll() is None

        run(main())


PERMISSIONS = """
authorization { users = [
  { user: h0, password: "pw-h0-0123456789",
    permissions: { publish: ["decnet.decky.>"], subscribe: ["decnet.decky.>"] } }
  { user: h1, password: "pw-h1-0123456789",
    permissions: { publish: ["decnet.decky.>"], subscribe: ["decnet.decky.>"] } }
] }
"""


def test_nats_permissions_violations_are_counted_never_fatal(fleet, run, tmp_path):
    password_file = tmp_path / "h1.pw"
    password_file.write_text("pw-h1-0123456789\n")
    with NatsServer(config=PERMISSIONS) as server:
        a, b, wrong = fleet("h0", "h1", "h2")
        a.start_bridge(server.url, "--user", "h0", "--export", "decky.>", "--export", "secret.>",
                       "--import", "decky.>", "--import", "forbidden.>", env={"DECNET_NATS_PASSWORD": "pw-h0-0123456789"})
        b.start_bridge(server.url, "--user", "h1", "--password-file", str(password_file), "--import", "decky.>")
        wrong.start_bridge(server.url, "--user", "h1", "--import", "decky.>", env={"DECNET_NATS_PASSWORD": "wrong"})

        async def main():
            await health(a.path, "h0", lambda h: h["connected"] and h["denied"] >= 1)  # the forbidden.> subscription
            async with UnixBus(a.path) as pub, UnixBus(b.path) as sub_bus:
                await health_on(sub_bus, "h1")
                async with sub_bus.subscribe(">") as sub:
                    await pub.publish("secret.s1", "refused by the server")
                    await pub.publish("decky.d1.state", "allowed")
                    await pub.flush()
                    evt = await next_event(sub)
                    while evt.topic.startswith("system."):
                        evt = await next_event(sub)
                    assert (evt.topic, evt.payload) == ("decky.d1.state", "allowed")
                beat = await health(a.path, "h0", lambda h: h["denied"] >= 2)
                refused = await health(wrong.path, "h2", lambda h: h["nats_errors"] >= 2)
            return beat, refused

        beat, refused = run(main())
    assert beat["connected"] and a.bridge.proc.poll() is None
    assert not refused["connected"] and wrong.bridge.proc.poll() is None


def test_nats_frozen_local_publishers_never_wait_and_the_bridge_sheds_counted(fleet, run):
    # 50 MB: more than the bridge's queue, nats-py's buffer and the kernel's socket buffers hold.
    count = scale(50_000, 500_000)
    payload = {"pad": "x" * 1000}
    with NatsServer() as server:
        a, b = export_a_import_b(fleet, server.url)

        async def main():
            await health(a.path, "a")
            async with UnixBus(a.path) as pub, UnixBus(b.path) as sub_bus:
                await health_on(sub_bus, "b")
                os.kill(server.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    for n in range(count):
                        await pub.publish("decky.d1.traffic", payload)
                    await pub.flush()
                    elapsed = time.monotonic() - started
                    beat = await health(a.path, "a", lambda h: h["dropped_export"] > 0)
                    rss = a.bridge_rss()
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                async with sub_bus.subscribe("decky.d1.state") as sub:
                    await health(a.path, "a", lambda h: h["live"])
                    await pub.publish("decky.d1.state", "after")  # flow resumes
                    assert (await next_event(sub)).payload == "after"
                return elapsed, pub.dropped, beat, rss

        elapsed, dropped, beat, rss = run(main())
    report("bridge, NATS frozen", events=count, publish_s=round(elapsed, 2), dropped_export=beat["dropped_export"],
           bridge_rss_mb=rss // 2**20)
    assert dropped == 0, "the local publisher lost events: the broker waited for the bridge"
    assert rss < 300 * 2**20, f"the bridge's memory grew to {rss // 2**20} MiB"


def test_local_broker_frozen_imports_are_shed_counted_and_told(fleet, run):
    count = scale(20_000, 200_000)
    with NatsServer() as server:
        a, b = export_a_import_b(fleet, server.url)

        async def main():
            await health(a.path, "a")
            async with UnixBus(a.path) as pub, UnixBus(b.path, ping_timeout=60) as sub_bus:
                await health_on(sub_bus, "b")
                async with sub_bus.subscribe("system.bridge.b.gap", maxsize=100_000) as gaps:
                    os.kill(b.broker.pid, signal.SIGSTOP)
                    try:
                        for n in range(count):
                            await pub.publish("decky.d1.state", {"n": n, "pad": "y" * 500})
                        await pub.flush()
                        # a may shed some too on a loaded machine; what it exported, b takes or counts.
                        sent = await health(a.path, "a", lambda h: h["exported"] + h["dropped_export"] == count)
                    finally:
                        os.kill(b.broker.pid, signal.SIGCONT)
                    gap = await next_event(gaps)
                    beat = await health_on(sub_bus, "b",
                                           lambda h: h["imported"] + h["dropped_import"] == sent["exported"])
            return gap.payload, beat, pub.dropped

        gap, beat, dropped = run(main())
    assert dropped == 0
    assert beat["dropped_import"] > 0 and beat["connected"], beat
    assert gap["reason"] in ("local", "overflow") and gap["lost"] > 0
    report("bridge, local broker frozen", events=count, imported=beat["imported"], dropped_import=beat["dropped_import"])


@pytest.mark.parametrize("block", [
    b"NATS/1.0\r\nDecnet-Origin: host-a\r\nDecnet-Seq: 0123456789abcdef.42\r\n\r\n",  # what the export pump writes
    b"NATS/1.0\r\nDecnet-Origin:  spaced \r\nDecnet-Seq:\tx.1 \r\n\r\n",
    b"NATS/1.0\r\nDecnet-Origin: h\xff\xfe\r\nDecnet-Seq: e.1\r\n\r\n",              # not UTF-8
    b"NATS/1.0\r\nDecnet-Origin: a\r\nDecnet-Seq: e.1\r\nOther: x\r\n\r\n",          # a third header
    b"NATS/1.0\r\nDecnet-Seq: e.1\r\nDecnet-Origin: a\r\n\r\n",                      # the other order
    b"NATS/1.0\r\nFoo: bar\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",                                                          # a status line
])
def test_fast_header_reader_agrees_with_nats_py(block):
    """The bridge's own reader of its header block gives what nats-py's parser gives, for any block."""
    from nats.aio.client import Client

    from decnet.bus.bridge.wire import read_headers_fast

    nc = Client()
    read_headers_fast(nc)
    assert "_process_headers" in vars(nc), "the reader was not installed on this nats-py"

    async def both():
        return await nc._process_headers(block), await Client._process_headers(nc, block)

    fast, general = asyncio.run(both())
    assert fast == general
