"""The broker on the wire (docs/protocol.md §3, §4), through raw sockets, on uvloop and asyncio."""

import resource
import select
import threading
import time

import orjson
import pytest

from decnet.bus._pure import encode
from decnet.bus.testing import BrokerProcess, Follower, Raw
from stress import report


def test_hello_reply_announces_the_server(broker):
    raw = Raw(broker.path)
    assert raw.server["v"] == 1 and raw.server["server"] == "decnet-bus"
    assert raw.server["max_payload"] == 1024 * 1024
    assert isinstance(raw.server["client_id"], int) and raw.server["version"]
    other = Raw(broker.path)
    assert other.server["client_id"] != raw.server["client_id"]


def test_evt_carries_the_pub_body_byte_for_byte(broker):
    sub, pub = Raw(broker.path), Raw(broker.path)
    sub.send(encode("SUB", "decky.*.state"))
    assert sub.until_pong() == []
    body = b'{"state": "up",   "odd spacing": [1,2]}'  # never re-encoded by the broker
    pub.send(encode("PUB", "decky.d1.state", body))
    assert pub.until_pong() == []
    assert sub.frame() == ("EVT", "decky.d1.state", body)
    assert encode("EVT", "decky.d1.state", body) in sub.raw_bytes


def test_one_evt_per_connection_however_many_patterns_match(broker):
    sub, pub = Raw(broker.path), Raw(broker.path)
    sub.send(encode("SUB", ">"), encode("SUB", "decky.*.state"), encode("SUB", "decky.d1.state"), encode("SUB", "decky.>"))
    sub.until_pong()
    pub.pub("decky.d1.state", 1)
    pub.pub("decky.d2.traffic", 2)
    pub.until_pong()
    got = [f[1] for f in sub.until_pong() if f[1] != "system.bus.health"]  # ">" takes heartbeats too
    assert got == ["decky.d1.state", "decky.d2.traffic"]


def test_echo_is_on_by_default_and_can_be_turned_off(broker):
    echo, quiet = Raw(broker.path), Raw(broker.path, echo=False)
    for raw in (echo, quiet):
        raw.send(encode("SUB", "a.>"))
        raw.until_pong()
    quiet.pub("a.b", "from quiet")
    quiet.until_pong()
    echo.pub("a.b", "from echo")
    assert [orjson.loads(f[2]) for f in echo.until_pong()] == ["from quiet", "from echo"]
    assert [orjson.loads(f[2]) for f in quiet.until_pong()] == ["from echo"]


def test_sub_is_idempotent_and_unsub_of_unknown_is_fine(broker):
    sub, pub = Raw(broker.path), Raw(broker.path)
    sub.send(encode("SUB", "a"), encode("SUB", "a"), encode("UNSUB", "never.subscribed"))
    assert sub.until_pong() == []  # no ERR
    pub.pub("a", 1)
    pub.until_pong()
    assert [f[0] for f in sub.until_pong()] == ["EVT"]
    sub.send(encode("UNSUB", "a"))
    sub.until_pong()
    pub.pub("a", 2)
    pub.until_pong()
    assert sub.until_pong() == []


@pytest.mark.parametrize(
    "frame,code",
    [
        (encode("PUB", "a..b", b"{}"), "bad_topic"),
        (encode("PUB", "a.*", b"{}"), "bad_topic"),
        (b"PUB\n\x00\x00\x00\x00", "bad_topic"),
        (b"PUB a\tb\n\x00\x00\x00\x00", "bad_topic"),
        (encode("SUB", "a.>.b"), "bad_pattern"),
        (encode("UNSUB", "a*"), "bad_pattern"),
        (encode("PUB", "system.bus.health", b"{}"), "reserved_topic"),
        (encode("EVT", "a", b"{}"), "bad_request"),
        (encode("HELLO", None, b'{"v":1,"name":"again","pid":1}'), "bad_hello"),
    ],
)
def test_invalid_requests_get_err_and_the_connection_stays(broker, frame, code):
    raw = Raw(broker.path)
    raw.send(frame)
    error = raw.error()
    assert error["code"] == code and error["message"]
    assert raw.until_pong() == []
    raw.send(encode("SUB", "ok"))
    raw.pub("ok", 1)
    assert [f[0] for f in raw.until_pong()] == ["EVT"]


@pytest.mark.parametrize(
    "data,code",
    [
        (b"NOPE x\n\x00\x00\x00\x00", "unknown_verb"),
        (b"PUB a\n\xff\xff\xff\xff", "payload_too_large"),  # 4 GiB announced, refused before any body
        (b"PUB " + b"a" * 600, "line_too_long"),
        (b"PUB d\xc3\xa9\n\x00\x00\x00\x00", "line_not_ascii"),
    ],
)
def test_framing_errors_get_err_and_close_while_others_carry_on(broker, data, code):
    healthy_sub, healthy_pub = Raw(broker.path), Raw(broker.path)
    healthy_sub.send(encode("SUB", "ok"))
    healthy_sub.until_pong()
    bad = Raw(broker.path)
    bad.send(data)
    assert bad.error()["code"] == code
    assert bad.closed()
    healthy_pub.pub("ok", 1)
    healthy_pub.until_pong()
    assert [f[1] for f in healthy_sub.until_pong()] == ["ok"]


def test_a_frame_before_hello_closes_the_connection(broker):
    raw = Raw(broker.path, hello=False)
    raw.send(encode("SUB", ">"))
    assert raw.error()["code"] == "hello_required"
    assert raw.closed()


def test_a_bad_hello_closes_the_connection(broker):
    raw = Raw(broker.path, hello=False)
    raw.send(encode("HELLO", None, b'{"v":2}'))
    assert raw.error()["code"] == "bad_hello"
    assert raw.closed()


def test_silence_before_hello_is_cut_after_two_seconds(broker):
    raw = Raw(broker.path, hello=False)
    started = time.monotonic()
    assert raw.error()["code"] == "hello_timeout"
    assert raw.closed()
    assert 1.5 < time.monotonic() - started < 9


def test_hello_timeout_is_an_option(sockdir, loop_name):
    with BrokerProcess(sockdir / "bus.sock", "--hello-timeout", "0.3", loop=loop_name) as proc:
        raw = Raw(proc.path, hello=False)
        started = time.monotonic()
        error = raw.error()
        assert error == {"code": "hello_timeout", "message": "no HELLO within 0.3 s"}
        assert raw.closed()
        assert time.monotonic() - started < 1.5  # well before the 2 s default


def test_heartbeat_reports_the_counters(broker):
    raw = Raw(broker.path)
    raw.send(encode("SUB", "system.bus.health"))
    verb, topic, body = raw.frame()
    assert (verb, topic) == ("EVT", "system.bus.health")
    health = orjson.loads(body)
    for key in ("v", "ts", "uptime_s", "loop", "accelerated", "connections", "subscriptions", "published", "delivered", "dropped"):
        assert key in health
    assert health["loop"] == broker.loop
    assert health["connections"] >= 1 and health["subscriptions"] >= 1


def test_limits_are_options_announced_and_enforced(sockdir, loop_name):
    with BrokerProcess(sockdir / "bus.sock", "--max-payload", "100", "--max-subscriptions", "2", loop=loop_name) as proc:
        raw = Raw(proc.path)
        assert raw.server["max_payload"] == 100
        raw.send(encode("SUB", "a"), encode("SUB", "b"), encode("SUB", "c"))
        assert raw.error()["code"] == "too_many_subscriptions"
        raw.send(encode("SUB", "a"))  # already held: not a new one
        assert raw.until_pong() == []
        raw.send(encode("PUB", "a", b"x" * 100))
        assert [f[0] for f in raw.until_pong()] == ["EVT"]
        raw.send(encode("PUB", "a", b"x" * 101))
        assert raw.error()["code"] == "payload_too_large"
        assert raw.closed()


def test_connection_limit_and_the_file_descriptor_limit(sockdir, loop_name):
    """Past --max-connections a client is told why and closed; once one leaves
    there is room again. The broker raises its own RLIMIT_NOFILE soft limit to
    the hard one, whatever soft limit it was started with."""
    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    proc = BrokerProcess(sockdir / "bus.sock", "--max-connections", "3", "--health-interval", "0.1", loop=loop_name)
    proc.start(preexec_fn=low_soft_limit)
    try:
        soft, hard = proc.ps.rlimit(resource.RLIMIT_NOFILE)
        assert soft == hard and hard != 256, (soft, hard)
        watch, a, b = Raw(proc.path), Raw(proc.path), Raw(proc.path)
        extra = Raw(proc.path, hello=False)
        error = extra.error()
        assert error["code"] == "too_many_connections" and "3" in error["message"]
        assert extra.closed()
        b.close()
        watch.heartbeat(lambda h: h["connections"] == 2)  # the broker has seen b go
        again = Raw(proc.path)
        assert again.until_pong() == []
        for raw in (watch, a, again):
            raw.close()
    finally:
        proc.stop()


def test_a_subscriber_that_never_reads_slows_nobody(sockdir, loop_name):
    """Drop-oldest on the stuck subscriber's queue; the healthy one gets every event."""
    with BrokerProcess(sockdir / "bus.sock", "--queue-limit", "1048576", "--health-interval", "0.2", loop=loop_name) as proc:
        stuck = Raw(proc.path)
        stuck.send(encode("SUB", "load.>"))
        stuck.until_pong()
        healthy, pub = Raw(proc.path, timeout=60), Raw(proc.path)
        healthy.send(encode("SUB", "load.>"))
        healthy.until_pong()
        count, body = 20_000, orjson.dumps({"pad": "x" * 1000})  # ~20 MiB through the broker
        batch = b"".join(encode("PUB", f"load.{i % 10}", body) for i in range(100))
        follower = Follower(healthy, count)
        for i in range(count // 100):
            follower.keep_within(i * 100, 300)  # ~300 KiB: inside its 1 MiB queue however loaded the machine
            pub.send(batch)
        started = time.monotonic()
        pub.until_pong()  # the publisher was never held up by the stuck reader
        assert time.monotonic() - started < 5
        assert follower.result() == count, "the healthy subscriber must receive every event"
        health = Raw(proc.path).heartbeat(lambda h: h["published"] >= count)
        assert 0 < health["dropped"] <= count


def test_nothing_after_bye_is_processed(broker):
    sub, pub = Raw(broker.path), Raw(broker.path)
    sub.send(encode("SUB", "x"))
    sub.until_pong()
    pub.send(encode("PUB", "x", b"1") + encode("BYE") + encode("PUB", "x", b"2"))
    assert pub.frame()[0] == "BYE" and pub.closed()
    assert [f[2] for f in sub.until_pong()] == [b"1"]


def test_a_client_flooding_pings_without_reading_cannot_hurt_the_broker(sockdir, loop_name):
    """Its PONGs cannot pile up: the broker stops reading a client that does not read once replies wait for it."""
    with BrokerProcess(sockdir / "bus.sock", "--queue-limit", "65536", loop=loop_name) as proc:
        flood = Raw(proc.path)
        flood.sock.setblocking(False)
        pings = encode("PING") * 20_000  # 180 KB a write
        cap = 16 * 1024 * 1024
        sent = 0
        deadline = time.monotonic() + 3
        while sent < cap and time.monotonic() < deadline:
            if select.select([], [flood.sock], [], 0.05)[1]:
                try:
                    sent += flood.sock.send(pings)
                except BlockingIOError:
                    pass
        # A broker that kept reading would have taken all 16 MB in 3 s (and
        # queued ~16 MB of PONGs); one that stopped took the socket buffers' worth.
        assert sent < 4 * 1024 * 1024, f"the broker read {sent} bytes of PINGs from a client that reads nothing"
        healthy = Raw(proc.path)
        t0 = time.monotonic()
        assert healthy.until_pong() == []
        assert time.monotonic() - t0 < 5
        assert proc.stop() == 0


def test_a_slow_reader_under_a_flood_still_has_its_requests_answered(sockdir, loop_name):
    """Regression (CI, pure install): the broker used to stop reading a client
    while its transport was paused, and each resume refilled the transport and
    paused it again before the loop could read. A subscriber slower than the
    publishers therefore never had its PING (or SUB, UNSUB) read: flush() timed
    out and an UNSUB never took effect."""
    # A 1 MiB queue: the answers wait behind at most that much at 4 MB/s.
    with BrokerProcess(sockdir / "bus.sock", "--queue-limit", str(1 << 20), "--health-interval", "0.2", loop=loop_name) as broker:
        slow = Raw(broker.path, timeout=30)
        slow.send(encode("SUB", "load.>"))
        slow.until_pong()
        stop = threading.Event()
        flood_errors: list = []

        def flood() -> None:
            pub = Raw(broker.path)
            batch = encode("PUB", "load.1", b'{"pad":"' + b"x" * 200 + b'"}') * 100
            try:
                while not stop.is_set():
                    pub.send(batch)
            except OSError as error:
                if not stop.is_set():
                    flood_errors.append(error)
            finally:
                pub.close()

        def flooding() -> None:
            assert flooder.is_alive() and not flood_errors, f"the flood stopped: {flood_errors}"

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:

            def read_slowly(until) -> None:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    # A bounded read: SO_RCVBUF would not do, AF_UNIX streams ignore it.
                    data = slow.sock.recv(4096)
                    assert data, "the broker closed the slow reader"
                    if until(list(slow.decoder.feed(data))):
                        return
                    time.sleep(0.001)
                raise AssertionError("no answer within 30 s while the flood went on")

            # Behind as a fact, whatever the machine's speed: it reads nothing
            # until the broker has dropped events for it (its queue overflowed,
            # which it only does while the reader's transport is paused), and
            # from then on more slowly than a broker on any machine relays.
            Raw(broker.path).heartbeat(lambda health: health["dropped"] > 0, timeout=60)
            read_slowly(lambda frames: any(f[0] == "ERR" and b"slow_consumer" in f[2] for f in frames))
            took = []
            for request in (encode("PING"), encode("UNSUB", "load.>") + encode("PING")):
                flooding()
                asked = time.monotonic()
                slow.send(request)
                read_slowly(lambda frames: any(f[0] == "PONG" for f in frames))
                took.append(round(time.monotonic() - asked, 3))
            flooding()  # the answers came while the flood went on
            report("slow reader under a flood", loop=broker.loop, pong_after_s=took)
            slow.until_pong()  # what was queued before the UNSUB
            assert slow.until_pong() == [], "the UNSUB was not carried out"
        finally:
            stop.set()
            flooder.join(30)
