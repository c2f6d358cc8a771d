"""Hostile input at a live broker: random and mutated byte streams on
many connections at once. The broker never dies or leaks, every connection
whose stream breaks the framing gets ERR and is closed, and a healthy
publisher/subscriber pair alongside loses nothing.

The decoders themselves are fuzzed in test_fuzz_decoder.py; here it is the
whole broker. ``DECNET_BUS_STRESS=long`` runs 10,000 examples.
"""

from __future__ import annotations

import socket

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stress import report, scale

from decnet.bus import constants as C
from decnet.bus._pure import FrameDecoder
from decnet.bus.errors import FrameError
from decnet.bus.protocol import encode
from decnet.bus.testing import BrokerProcess, Raw, fds

EXAMPLES = scale(500, 10000)
# The healthy pair's topic: one the fuzzer cannot stumble on (it may SUB to
# ">" and PUB anywhere else).
HEALTHY = "healthy.pair-7f3a9c"
MAX_PAYLOAD = 4096

topics = st.one_of(
    st.sampled_from(["a", "a.b", "system.bus.health", "decky.d1.state", "*", ">", "a.>", "a..b", ""]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
)
hello = st.builds(lambda body: encode("HELLO", None, body), st.one_of(
    st.just(orjson.dumps({"v": 1, "name": "fuzz", "pid": 1})),
    st.binary(max_size=40),
    st.builds(orjson.dumps, st.dictionaries(st.sampled_from(["v", "name", "pid", "echo"]),
                                            st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=5), st.booleans(), st.none()))),
))
frame = st.one_of(
    hello,
    st.builds(lambda v, t: encode(v, t), st.sampled_from(["SUB", "UNSUB"]), topics),
    st.builds(lambda t, b: encode("PUB", t, b), topics, st.binary(max_size=64)),
    st.sampled_from([encode("PING"), encode("PONG"), encode("BYE"), encode("EVT", "a", b"x"), encode("ERR")]),
)


@st.composite
def stream(draw) -> bytes:
    """A plausible session (HELLO first, most of the time) with mutations, or pure noise."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(min_size=1, max_size=600))
    frames = ([draw(hello)] if draw(st.booleans()) or draw(st.booleans()) else []) + draw(st.lists(frame, max_size=8))
    data = bytearray(b"".join(frames) or b"\n")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "cut", "length", "long_line"]))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 32))]
        elif kind == "length":  # a length field nobody should believe
            data[at:at] = b"PUB a\n" + draw(st.sampled_from([MAX_PAYLOAD + 1, 2**31, 2**32 - 1])).to_bytes(4, "big")
        elif kind == "long_line":
            data[at:at] = b"PUB " + b"a" * draw(st.integers(C.MAX_LINE - 8, C.MAX_LINE + 64))
    return bytes(data)


def breaks_framing(data: bytes) -> bool:
    """Our own decoder's verdict: does this stream hold a framing error before any BYE?"""
    decoder = FrameDecoder(MAX_PAYLOAD)
    try:
        for verb, _, _ in decoder.feed(data):
            if verb == "BYE":
                return False
    except FrameError:
        return True
    return False


def frames_until_eof(sock: socket.socket) -> list:
    decoder, frames = FrameDecoder(C.MAX_LEN_FIELD), []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return frames
        if not data:
            return frames
        frames.extend(decoder.feed(data))


def test_hostile_streams_on_many_connections_at_once(sockdir, loop_name):
    with BrokerProcess(sockdir / "bus.sock", "--max-payload", str(MAX_PAYLOAD), "--health-interval", "0.2",
                       loop=loop_name) as proc:
        healthy_sub, healthy_pub = Raw(proc.path), Raw(proc.path)
        healthy_sub.send(encode("SUB", HEALTHY))
        healthy_sub.until_pong()
        pid = proc.proc.pid
        base_fds = fds(pid)
        counts = {"examples": 0, "connections": 0, "bytes": 0, "refused": 0, "sent": 0}

        @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.lists(stream(), min_size=1, max_size=8))
        def attack(streams):
            socks = []
            for data in streams:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(20)
                s.connect(str(proc.path))
                socks.append(s)
            for s, data in zip(socks, streams):
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)  # EOF: a connection the broker keeps ends here
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed on us mid-send: what follows checks it said why
            for s, data in zip(socks, streams):
                frames = frames_until_eof(s)  # the broker must close every one of them
                s.close()
                if breaks_framing(data):
                    counts["refused"] += 1
                    assert frames and frames[-1][0] in ("ERR", "BYE"), (data[:80], frames[-3:])
                    if frames[-1][0] == "ERR":
                        assert orjson.loads(frames[-1][2])["code"]
            healthy_pub.pub(HEALTHY, {"seq": counts["sent"]})
            counts["sent"] += 1
            counts["examples"] += 1
            counts["connections"] += len(streams)
            counts["bytes"] += sum(map(len, streams))

        attack()
        healthy_pub.until_pong()
        seqs = [orjson.loads(f[2])["seq"] for f in healthy_sub.until_pong() if f[0] == "EVT"]
        assert seqs == list(range(counts["sent"])), "the healthy pair lost events"
        probe = Raw(proc.path)
        probe.heartbeat(lambda h: h["connections"] == 3)  # only the pair and the probe left
        assert fds(pid) == base_fds + 1  # + the probe
        assert proc.proc.poll() is None
        report("broker fuzz", loop=loop_name, **counts)
