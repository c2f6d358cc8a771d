"""Property tests: the compiled module and its twin agree on every input, and are right.

Each property runs 500 examples or more (the hypothesis profile in conftest.py).
"""

import re

from hypothesis import given, strategies as st

from decnet.bus import FrameError, TopicError, constants as C

# Small alphabets so that random patterns and topics actually match each other.
TOKENS = st.sampled_from(["a", "b", "c", "d1"])
TOPICS = st.lists(TOKENS, min_size=1, max_size=5).map(".".join)
PATTERNS = st.builds(
    lambda body, tail: ".".join(body + tail),
    st.lists(st.one_of(TOKENS, st.just("*")), min_size=0, max_size=4),
    st.sampled_from([[], [], [">"]]),
).filter(bool)
# Anything at all, weighted towards the characters the grammar cares about.
NEAR_TOPICS = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab.*> é\n\t~!") + ["\x7f", "\x00"]), max_size=12),
    st.text(max_size=20),
    st.integers(250, 260).map(lambda n: "x" * n),
)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except (TopicError, FrameError) as error:
        return (type(error).__name__, error.code, str(error))
    except TypeError:
        return ("TypeError",)


def oracle(pattern, topic):
    """Matching defined independently of both implementations: as a regex."""
    parts = [{"*": r"[^.]+", ">": r".+"}.get(tok, re.escape(tok)) for tok in pattern.split(".")]
    return re.fullmatch(r"\.".join(parts), topic) is not None


@given(NEAR_TOPICS)
def test_twins_agree_on_validation(twins, value):
    pure, fast = twins
    assert outcome(pure.check_topic, value) == outcome(fast.check_topic, value)
    assert outcome(pure.check_pattern, value) == outcome(fast.check_pattern, value)


@given(NEAR_TOPICS, NEAR_TOPICS)
def test_twins_agree_on_matches_of_anything(twins, pattern, topic):
    pure, fast = twins
    assert outcome(pure.matches, pattern, topic) == outcome(fast.matches, pattern, topic)


@given(PATTERNS, TOPICS)
def test_matches_is_right(twins, pattern, topic):
    pure, fast = twins
    expected = oracle(pattern, topic)
    assert pure.matches(pattern, topic) is expected
    assert fast.matches(pattern, topic) is expected


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "add", "remove", "lookup"]), PATTERNS, st.integers(0, 3), TOPICS),
    max_size=40,
)


@given(OPS)
def test_index_is_right_with_and_without_cache(twins, ops):
    """Random add/remove/lookup sequences against a brute-force model, cache on, tiny and off."""
    indexes = [impl.SubscriptionIndex(cache_size=size) for impl in twins for size in (0, 3, 1024)]
    model = set()
    for op, pattern, sub, topic in ops:
        if op == "add":
            expected = (pattern, sub) not in model
            model.add((pattern, sub))
            assert [ix.add(pattern, sub) for ix in indexes] == [expected] * len(indexes)
        elif op == "remove":
            expected = (pattern, sub) in model
            model.discard((pattern, sub))
            assert [ix.remove(pattern, sub) for ix in indexes] == [expected] * len(indexes)
        want = {s for p, s in model if oracle(p, topic)}
        for ix in indexes:
            found = ix.lookup(topic)
            assert len(found) == len(set(found)) and set(found) == want
            assert len(ix) == len(model)


FRAME = st.one_of(
    st.tuples(st.sampled_from(["PUB", "EVT", "SUB", "UNSUB"]), TOPICS, st.binary(max_size=40)),
    st.tuples(st.sampled_from(["HELLO", "PING", "PONG", "ERR", "BYE"]), st.none(), st.binary(max_size=40)),
)


def chunked(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


def run_decoder(impl, chunks, max_payload, relay):
    decoder = impl.FrameDecoder(max_payload=max_payload, relay=relay)
    frames = []
    try:
        for chunk in chunks:
            frames.extend(decoder.feed(chunk))
    except FrameError as error:
        return frames, (error.code, str(error))
    return frames, decoder.buffered


@given(st.lists(FRAME, max_size=20), st.lists(st.integers(0, 10_000), max_size=12), st.booleans())
def test_round_trip_under_any_split(twins, frames, cuts, relay):
    for impl in twins:
        data = b"".join(impl.encode(*f) for f in frames)
        assert b"".join(impl.encode(*f) for f in frames) == b"".join(twins[0].encode(*f) for f in frames)
        want = [("PUB", a, impl.encode("EVT", a, b)) if relay and v == "PUB" else (v, a, b) for v, a, b in frames]
        assert run_decoder(impl, chunked(data, cuts), C.DEFAULT_MAX_PAYLOAD, relay) == (want, 0)


MUTATION = st.tuples(st.integers(0, 10_000), st.sampled_from(["flip", "insert", "delete"]), st.binary(min_size=1, max_size=6))


@given(
    st.lists(FRAME, max_size=8),
    st.lists(MUTATION, max_size=4),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.integers(0, 64),
    st.booleans(),
)
def test_twins_agree_on_mutated_streams(twins, frames, mutations, cuts, max_payload, relay):
    data = bytearray(b"".join(twins[0].encode(*f) for f in frames))
    for at, how, blob in mutations:
        at = at % (len(data) + 1)
        if how == "flip" and at < len(data):
            data[at] ^= blob[0] or 0x80
        elif how == "insert":
            data[at:at] = blob
        else:
            del data[at : at + len(blob)]
    chunks = chunked(bytes(data), cuts)
    pure, fast = twins
    assert run_decoder(pure, chunks, max_payload, relay) == run_decoder(fast, chunks, max_payload, relay)


@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=8))
def test_twins_agree_on_garbage(twins, data, cuts):
    chunks = chunked(data, cuts)
    pure, fast = twins
    assert run_decoder(pure, chunks, 16, False) == run_decoder(fast, chunks, 16, False)
    # The answer never depends on how the stream was cut.
    assert run_decoder(fast, chunks, 16, False) == run_decoder(fast, [data], 16, False)
