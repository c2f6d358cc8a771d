"""Fuzzing the decoders: random and mutated byte streams, cut any way, both twins.

The decoder reads whatever the other end of a socket sends, so on any input it
must raise nothing but FrameError, refuse a frame as soon as the rule it breaks
can be seen (never buffering a body it is going to refuse), give the same frames
and the same error however the stream was cut into reads, and agree with its
twin exactly. ``model`` below is docs/protocol.md §3 read literally, written without looking
at either implementation: it says what the right answer is.

The same goes for the two functions that run a decoder over untrusted bytes:
``client_feed`` (a client reading its broker) and ``relay`` (the broker reading
a client). ``fuzz/fuzz_decoder.py`` is the coverage-guided (atheris) twin of
these properties, for long runs.

Each property runs the profile's 500 examples (conftest.py); 10,000 under
``DECNET_BUS_STRESS=long`` (``make stress``).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stress import scale
from twin_runs import broker, client, drain

from decnet.bus import FrameError, constants as C

fuzz = settings(max_examples=scale(settings.default.max_examples, 10_000))
# The ``impl`` fixture is function-scoped but only hands out a module, which
# examples cannot change: nothing to reset between them.
per_impl = settings(fuzz, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VERBS = {verb.encode() for verb in C.VERBS}
HEAD = C.MAX_LINE + C.LEN_SIZE  # the most a frame's line and length field can take
SMALLEST_FRAME = len(b"PUB\n") + C.LEN_SIZE  # so a stream of n bytes holds at most n // 8 frames
SMALL_LIMITS = st.integers(0, 64)
LIMITS = st.one_of(SMALL_LIMITS, st.sampled_from([C.DEFAULT_MAX_PAYLOAD, C.MAX_LEN_FIELD]))


def model(data: bytes, max_payload: int, relay: bool):
    """docs/protocol.md §3 as a reference decoder of a whole stream: ``(frames, code, at)``.

    With an error, ``code`` is its code and ``at`` the length of the shortest
    prefix of ``data`` that shows it (the non-ASCII byte, the 512th byte without
    a LF, the LF after an unknown verb, the last byte of a length field over the
    limit): a decoder must refuse the stream then, not later. Without one,
    ``code`` is None and ``at`` counts the bytes of the incomplete frame left over.
    """
    frames, pos = [], 0
    while pos < len(data):
        window = data[pos : pos + C.MAX_LINE]
        lf = window.find(b"\n")
        line = window if lf < 0 else window[:lf]
        for offset, byte in enumerate(line):
            if byte > 0x7F:
                return frames, C.E_LINE_NOT_ASCII, pos + offset + 1
        if lf < 0:
            if len(window) == C.MAX_LINE:
                return frames, C.E_LINE_TOO_LONG, pos + C.MAX_LINE
            break
        verb, space, arg = line.partition(b" ")
        if verb not in VERBS:
            return frames, C.E_UNKNOWN_VERB, pos + lf + 1
        start = pos + lf + 1 + C.LEN_SIZE
        if start > len(data):
            break
        size = int.from_bytes(data[start - C.LEN_SIZE : start], "big")
        if size > max_payload:
            return frames, C.E_PAYLOAD_TOO_LARGE, start
        if start + size > len(data):
            break
        body = b"EVT" + data[pos + 3 : start + size] if relay and verb == b"PUB" else data[start : start + size]
        frames.append((verb.decode(), arg.decode() if space else None, body))
        pos = start + size
    return frames, None, len(data) - pos


# -- streams


def frame_bytes(verb: bytes, arg, body: bytes, size=None) -> bytes:
    """A frame as raw bytes, free to break every rule (long or non-ASCII line, lying length)."""
    line = verb if arg is None else verb + b" " + arg
    return line + b"\n" + (len(body) if size is None else size).to_bytes(4, "big") + body


TOKENS = st.sampled_from([b"a", b"b", b"d1", b"*", b">", b""])
TOPIC_LIKE = st.lists(TOKENS, min_size=1, max_size=4).map(b".".join)  # topics and patterns, valid or not
ARGS = st.one_of(
    st.none(),
    TOPIC_LIKE,
    TOPIC_LIKE,
    st.binary(max_size=12),  # may hold a LF or non-ASCII bytes
    st.integers(C.MAX_LINE - 14, C.MAX_LINE + 2).map(lambda n: b"a" * n),  # lines either side of 512 bytes
    st.integers(C.MAX_TOPIC - 2, C.MAX_TOPIC + 2).map(lambda n: (b"a." * n)[: n - 1] + b"b"),  # topics near 255 bytes
    st.sampled_from([b"system.bus.health", b"system.bus"]),  # reserved, and just not: relay() must tell them apart
)
# Mostly verbs that exist, so that streams get past their first frame.
VERB_BYTES = st.sampled_from(sorted(VERBS) * 3 + [b"", b"pub", b"PUBX", b"EV", b"P\xc3\x9cB"])
BODIES = st.one_of(st.binary(max_size=40), st.binary(max_size=40), st.integers(60, 3000).map(lambda n: b"x" * n))
# The length field: right, or replaced by anything up to 0xFFFFFFFF.
SIZES = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.none(),
    st.integers(0, C.MAX_LEN_FIELD),
    st.sampled_from([C.MAX_LEN_FIELD, 0x80000000, 0x7FFFFFFF, C.DEFAULT_MAX_PAYLOAD, C.DEFAULT_MAX_PAYLOAD + 1, 65]),
)
FRAMES = st.lists(st.builds(frame_bytes, VERB_BYTES, ARGS, BODIES, SIZES), max_size=8).map(b"".join)
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=6),
    ),
    max_size=4,
)
# Pieces of the grammar and near misses: random bytes alone almost never get past the verb.
FRAGMENTS = st.sampled_from(
    [b"PUB", b"EVT", b"SUB", b"UNSUB", b"HELLO", b"PING", b"PONG", b"ERR", b"BYE", b"pub", b"PUBX"]
    + [b" ", b"\n", b"\r\n", b"a.b", b"*", b">", b"\x7f", b"\x80", b"\xc3\xa9", b"{}"]
    + [b"\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x03", b"\x00\x01\x00\x00", b"\xff\xff\xff\xff"]
)
SOUP = st.lists(st.one_of(FRAGMENTS, FRAGMENTS, FRAGMENTS, st.binary(max_size=4)), max_size=60).map(b"".join)


def mutate(data: bytes, mutations) -> bytes:
    data = bytearray(data)
    for how, at, blob in mutations:
        at %= len(data) + 1
        if how == "flip" and at < len(data):
            data[at] ^= blob[0] or 0x80
        elif how == "insert":
            data[at:at] = blob
        elif how == "delete":
            del data[at : at + len(blob)]
        elif how == "truncate":
            del data[at:]
    return bytes(data)


STREAMS = st.one_of(
    st.binary(max_size=700),
    SOUP,
    FRAMES,
    st.builds(mutate, FRAMES, MUTATIONS),
    st.builds(mutate, FRAMES, MUTATIONS),
)
# Where the stream is cut into reads, and as what type each read arrives.
CUTS = st.lists(st.integers(0, 4000), max_size=10)
KINDS = st.lists(st.sampled_from([bytes, bytearray, memoryview]), min_size=1, max_size=3)


def chunked(data: bytes, cuts, kinds=(bytes,)) -> list:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    return [kinds[i % len(kinds)](piece) for i, piece in enumerate(pieces)]


def feed(impl, chunks, max_payload=C.DEFAULT_MAX_PAYLOAD, relay=False, pulls=None):
    """Feed ``chunks`` in turn: ``(frames, code, message, fed, buffered)``.

    After each read the frames are taken until none is left or, with ``pulls``,
    at most ``pulls[i]`` of them (the broker stops at a BYE and may be fed again
    with frames still waiting); then the rest. ``fed`` counts the bytes handed
    over when the error came (all of them without one). Any exception but
    FrameError propagates, failing the test with it.
    """
    decoder = impl.FrameDecoder(max_payload=max_payload, relay=relay)
    frames, fed = [], 0
    limit = sum(len(chunk) for chunk in chunks) // SMALLEST_FRAME

    def take(most=None):
        while most is None or most > 0:
            frame = next(decoder, None)
            if frame is None:
                return
            frames.append(frame)
            assert len(frames) <= limit, "more frames than the bytes can hold: the decoder loops"
            most = None if most is None else most - 1

    try:
        for i, chunk in enumerate(chunks):
            fed += len(chunk)
            decoder.feed(chunk)
            take(pulls[i % len(pulls)] if pulls else None)
        take()
    except FrameError as error:
        # Broken for good: the stream cannot be resynchronized.
        for again in (lambda: decoder.feed(b"PING\n\x00\x00\x00\x00"), lambda: next(decoder)):
            with pytest.raises(FrameError) as caught:
                again()
            assert (caught.value.code, str(caught.value)) == (error.code, str(error))
        return frames, error.code, str(error), fed, decoder.buffered
    return frames, None, None, fed, decoder.buffered


def boundaries(chunks) -> list:
    out, total = [], 0
    for chunk in chunks:
        total += len(chunk)
        out.append(total)
    return out


# -- the decoder


@per_impl
@given(STREAMS, CUTS, KINDS, LIMITS, st.booleans())
def test_decoder_gives_the_model_answer_however_the_stream_is_cut(impl, data, cuts, kinds, max_payload, relay):
    chunks = chunked(data, cuts, kinds)
    frames, code, _, fed, buffered = feed(impl, chunks, max_payload, relay)
    want_frames, want_code, at = model(data, max_payload, relay)
    assert (frames, code) == (want_frames, want_code)
    if code is None:
        assert buffered == at  # exactly the incomplete frame is kept
    else:
        # Refused in the very read that showed the error: not one read later.
        assert fed == min(b for b in boundaries(chunks) if b >= at)


PULLS = st.lists(st.integers(0, 3), min_size=1, max_size=4)


@per_impl
@given(STREAMS, CUTS, PULLS, LIMITS, st.booleans())
def test_chunking_changes_nothing(impl, data, cuts, pulls, max_payload, relay):
    # Same frames, same error (code and message), however the reads were cut,
    # and whether or not frames were still waiting when the next read came.
    whole = feed(impl, [data], max_payload, relay)
    for chunks in (chunked(data, cuts), [data[i : i + 1] for i in range(len(data))]):
        assert feed(impl, chunks, max_payload, relay)[:3] == whole[:3]
    assert feed(impl, chunked(data, cuts), max_payload, relay, pulls)[:3] == whole[:3]


@per_impl
@given(FRAMES, VERB_BYTES, ARGS, st.data(), st.binary(max_size=64), st.booleans())
def test_a_length_over_the_limit_is_refused_before_any_of_its_body(impl, before, verb, arg, data, body, relay):
    """Fed one byte at a time, the frame is refused at the last byte of its
    length field, with at most a line and a length field held."""
    max_payload = data.draw(LIMITS, "max_payload")
    size = None  # no length is over a limit of 0xFFFFFFFF: then the frame is right
    if max_payload < C.MAX_LEN_FIELD:
        size = data.draw(st.integers(max_payload + 1, C.MAX_LEN_FIELD), "size")
    bad = frame_bytes(verb, arg, body, size)
    stream = before + bad
    want_frames, want_code, at = model(stream, max_payload, relay)
    bytewise = [stream[i : i + 1] for i in range(len(stream))]
    frames, code, message, fed, buffered = feed(impl, bytewise, max_payload, relay)
    assert (frames, code) == (want_frames, want_code)
    if code is not None:
        assert fed == at and buffered <= HEAD
    ours = b"\n" not in (arg or b"") and model(before, max_payload, relay)[1:] == (None, 0)
    if size is not None and ours and code == C.E_PAYLOAD_TOO_LARGE:
        # The frame we built (its line intact, after whole frames) is the one
        # refused, as soon as its length field was read.
        assert fed == len(before) + len(bad) - len(body)
        assert f"body of {size} bytes" in message


@fuzz
@given(STREAMS, CUTS, KINDS, st.one_of(st.none(), PULLS), LIMITS, st.booleans())
def test_twins_agree_exactly(twins, data, cuts, kinds, pulls, max_payload, relay):
    # Frames, error code and message, where the error came and what stays buffered.
    chunks = chunked(data, cuts, kinds)
    pure, fast = twins
    assert feed(pure, chunks, max_payload, relay, pulls) == feed(fast, chunks, max_payload, relay, pulls)


# -- the client's EVT delivery


CLIENT_FRAMES = st.builds(frame_bytes, st.sampled_from([b"EVT", b"EVT", b"PING", b"ERR"]), ARGS, BODIES, SIZES)
EVT_STREAMS = st.one_of(STREAMS, st.lists(CLIENT_FRAMES, max_size=8).map(b"".join))


@per_impl
@given(EVT_STREAMS, CUTS, LIMITS)
def test_client_feed_raises_only_frame_errors(impl, data, cuts, max_payload):
    others, error, _, _ = client(impl, chunked(data, cuts), max_payload)
    # Every EVT that names a topic is delivered (or dropped by a full queue);
    # everything else comes back to the caller, an EVT without a topic included.
    frames, code, _ = model(data, max_payload, False)
    want = [f for f in frames if f[0] != "EVT" or f[1] is None]
    assert (error or (None,))[0] == code
    if code is None:
        assert others == want
    else:
        # The read that fails returns nothing: its control frames before the
        # error are lost with the connection (its EVTs were delivered).
        assert others == want[: len(others)]


@fuzz
@given(EVT_STREAMS, CUTS, LIMITS)
def test_twins_agree_on_client_feed(twins, data, cuts, max_payload):
    # Frames handed back, the error, each queue's events, gaps and drops.
    chunks = chunked(data, cuts)
    pure, fast = twins
    assert client(pure, chunks, max_payload) == client(fast, chunks, max_payload)


def test_client_feed_hands_back_an_evt_without_a_topic(impl):
    # Found by the fuzzing above: "EVT\n" + length made the pure twin raise
    # AttributeError and the compiled one TypeError (None as a topic), out of
    # the client's data_received. There is no topic to deliver it on: it comes
    # back with the control frames, which the client ignores for EVT.
    index = impl.SubscriptionIndex()
    queue = impl.EventQueue()
    queue.state = impl.ACTIVE
    index.add(">", queue)
    data = b"EVT\n\x00\x00\x00\x02{}" + impl.encode("EVT", "a.b", b"1") + impl.encode("PING")
    others = impl.client_feed(impl.FrameDecoder(), index, data)
    assert others == [("EVT", None, b"{}"), ("PING", None, b"")]
    assert drain(impl, queue) == [("a.b", b"1")]


# -- the broker's relay


def valid_topic(topic) -> bool:
    """docs/protocol.md §2, independently of both implementations."""
    return (
        topic is not None
        and 1 <= len(topic) <= C.MAX_TOPIC
        and re.fullmatch(r"[!-~]+", topic) is not None
        and all(token and "*" not in token and ">" not in token for token in topic.split("."))
    )


@per_impl
@given(STREAMS, CUTS, LIMITS, st.booleans())
def test_relay_raises_only_frame_errors(impl, data, cuts, max_payload, echo):
    returned, error, _, counters = broker(impl, chunked(data, cuts), max_payload, echo)
    # relay() routes exactly the PUBs with a valid, unreserved topic; the rest come back.
    frames, code, _ = model(data, max_payload, True)
    routed = [f[0] == "PUB" and valid_topic(f[1]) and not f[1].startswith(C.RESERVED_PREFIX) for f in frames]
    assert returned == [f for f, r in zip(frames, routed) if not r]
    assert counters[0] == sum(routed)
    assert (error or (None,))[0] == code


@fuzz
@given(STREAMS, CUTS, LIMITS, st.booleans())
def test_twins_agree_on_relay(twins, data, cuts, max_payload, echo):
    # Frames handed back, the error, the EVTs each outbox got, the counters.
    chunks = chunked(data, cuts)
    pure, fast = twins
    assert broker(pure, chunks, max_payload, echo) == broker(fast, chunks, max_payload, echo)
