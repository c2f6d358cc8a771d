"""Micro-benchmarks of the hot path, each for the compiled module and its twin.

Run: ``make bench`` (or ``pytest bench --benchmark-only``); ``bench/ratios.py``
turns a ``--benchmark-json`` file into the ratios quoted in docs/BENCHMARKS.md.
"""

import itertools

import orjson
import pytest

TOPIC = "decky.d1.state"
# The 10 patterns that match TOPIC, each held by its own subscriber.
MATCHING = ["decky.d1.state", "decky.*.state", "decky.d1.*", "decky.*.*", "*.d1.state",
            "*.*.state", "*.d1.*", "*.*.*", "decky.>", ">"]


def non_matching(count):
    """Realistic patterns that do not match TOPIC: other deckies, traffic, topologies."""
    shapes = ["decky.d{}.state", "decky.d{}.traffic", "topology.t{}.>", "decky.x{}.*"]
    return [shapes[i % len(shapes)].format(i + 2) for i in range(count)]


def build_index(impl, total, cache_size):
    index = impl.SubscriptionIndex(cache_size=cache_size)
    for i, pattern in enumerate(MATCHING + non_matching(total - len(MATCHING))):
        index.add(pattern, i)
    assert len(index.lookup(TOPIC)) == len(MATCHING)
    return index


def pub_chunk(impl, size=64 * 1024, frame_size=200):
    """``size`` bytes of back-to-back PUB frames of ``frame_size`` bytes each (the last one cut)."""
    frames = []
    i = 0
    while sum(map(len, frames)) < size:
        topic = f"decky.d{i % 100}.state"
        head = len(impl.encode("PUB", topic, b""))
        payload = orjson.dumps({"decky": f"d{i % 100}", "state": "up", "pad": ""})
        payload = payload[:-2] + b"x" * (frame_size - head - len(payload)) + b'"}'
        frames.append(impl.encode("PUB", topic, payload))
        i += 1
    assert {len(f) for f in frames} == {frame_size}
    return b"".join(frames)[:size]


@pytest.mark.benchmark(group="matches")
def test_matches(benchmark, impl):
    """One ``matches(pattern, topic)`` call, both validated: what FakeBus does per event."""
    assert benchmark(impl.matches, "decky.*.state", TOPIC)


@pytest.mark.benchmark(group="check_topic")
def test_check_topic(benchmark, impl):
    """Validating one topic: the broker does it for every PUB, the client for every publish."""
    assert benchmark(impl.check_topic, "topology.t1.mutation.applied")


@pytest.mark.benchmark(group="lookup-10k-cached")
def test_lookup_10k_cached(benchmark, impl):
    """Index lookup among 10,000 subscriptions, 10 matching, the result cached (the steady state)."""
    index = build_index(impl, 10_000, cache_size=1024)
    assert len(benchmark(index.lookup, TOPIC)) == 10


@pytest.mark.benchmark(group="lookup-10k-uncached")
def test_lookup_10k_uncached(benchmark, impl):
    """Index lookup among 10,000 subscriptions, 10 matching, cache off: the trie walk itself."""
    index = build_index(impl, 10_000, cache_size=0)
    assert len(benchmark(index.lookup, TOPIC)) == 10


@pytest.mark.benchmark(group="lookup-10-uncached")
def test_lookup_10_uncached(benchmark, impl):
    """Index lookup among just the 10 matching subscriptions, cache off: the baseline for 10k."""
    index = build_index(impl, 10, cache_size=0)
    assert len(benchmark(index.lookup, TOPIC)) == 10


@pytest.mark.benchmark(group="lookup-10k-missing")
def test_lookup_10k_missing(benchmark, impl):
    """Index lookup among 10,000 subscriptions, cache on and full, every topic new
    to it (6,400 topics cycled past a 1,024-entry cache): walk, store, evict."""
    index = build_index(impl, 10_000, cache_size=1024)
    topics = itertools.cycle([f"decky.d{k}.state" for k in range(6400)])
    for _ in range(6400):
        index.lookup(next(topics))
    benchmark(lambda: index.lookup(next(topics)))
    assert index.cached == 1024


def _decode(impl, chunk, relay):
    return list(impl.FrameDecoder(relay=relay).feed(chunk))


@pytest.mark.benchmark(group="decode-64k")
def test_decode_64k(benchmark, impl):
    """Decoding a 64 KiB read of 200-byte PUB frames into (verb, topic, body) tuples (the client's side)."""
    chunk = pub_chunk(impl)
    assert len(benchmark(_decode, impl, chunk, False)) == len(chunk) // 200


@pytest.mark.benchmark(group="decode-64k-relay")
def test_decode_64k_relay(benchmark, impl):
    """The same 64 KiB read decoded as the broker does: each PUB turned into its EVT frame."""
    chunk = pub_chunk(impl)
    assert len(benchmark(_decode, impl, chunk, True)) == len(chunk) // 200


@pytest.mark.benchmark(group="encode")
def test_encode_pub(benchmark, impl):
    """Encoding one 200-byte PUB frame: the client does it for every publish."""
    body = b'{"decky":"d1","state":"up","pad":"' + b"x" * 150 + b'"}'
    assert len(benchmark(impl.encode, "PUB", TOPIC, body)) == len(f"PUB {TOPIC}\n") + 4 + len(body)


def evt_chunk(impl, size=64 * 1024):
    """``size`` bytes of 200-byte EVT frames (what a subscriber reads)."""
    return pub_chunk(impl, size).replace(b"PUB decky.", b"EVT decky.")


def _client_setup(impl, chunk):
    index = impl.SubscriptionIndex()
    queue = impl.EventQueue(maxsize=1 << 20)
    index.add("decky.*.state", queue)
    return (impl, impl.FrameDecoder(), index, queue, chunk), {}


def _client_read(impl, decoder, index, queue, chunk):
    impl.client_feed(decoder, index, chunk)
    return queue.queued


@pytest.mark.benchmark(group="client-read-64k")
def test_client_read_64k(benchmark, impl):
    """A subscriber's side of one 64 KiB read: decode the EVTs, match, make Events, queue them."""
    chunk = evt_chunk(impl)
    queued = benchmark.pedantic(_client_read, setup=lambda: _client_setup(impl, chunk), rounds=2000)
    assert queued == len(chunk) // 200


def _broker_setup(impl, chunk, subscribers):
    stats = impl.RouteStats()
    index = impl.SubscriptionIndex()
    for _ in range(subscribers):
        index.add("decky.*.state", impl.Outbox(stats, 1 << 30))
    return (impl, impl.FrameDecoder(relay=True).feed(chunk), index, stats, impl.FlushSet()), {}


def _broker_read(impl, decoder, index, stats, flush):
    assert impl.relay(decoder, index, None, True, stats, flush) is None
    return stats.routed


@pytest.mark.benchmark(group="broker-read-64k-to-10")
def test_broker_read_64k_to_10(benchmark, impl):
    """The broker's side of one 64 KiB read of PUBs: check, look up and queue each on 10 subscribers' outboxes."""
    chunk = pub_chunk(impl)
    routed = benchmark.pedantic(_broker_read, setup=lambda: _broker_setup(impl, chunk, 10), rounds=2000)
    assert routed == 10 * (len(chunk) // 200)


def _broker_setup_warm(impl, chunk, subscribers):
    args, kwargs = _broker_setup(impl, chunk, subscribers)
    index = args[2]
    for k in range(100):  # every topic of the chunk already cached, as in a running broker
        index.lookup(f"decky.d{k}.state")
    return args, kwargs


@pytest.mark.benchmark(group="broker-read-64k-to-10-warm")
def test_broker_read_64k_to_10_warm(benchmark, impl):
    """``broker_read_64k_to_10`` with the index's cache already holding the read's topics (the steady state)."""
    chunk = pub_chunk(impl)
    routed = benchmark.pedantic(_broker_read, setup=lambda: _broker_setup_warm(impl, chunk, 10), rounds=2000)
    assert routed == 10 * (len(chunk) // 200)


@pytest.mark.benchmark(group="deliver")
def test_deliver(benchmark, impl):
    """One event to one matching Subscription queue: lookup (cached), Event, put."""
    index = impl.SubscriptionIndex()
    queue = impl.EventQueue(maxsize=1 << 30)
    index.add("decky.*.state", queue)
    assert benchmark(impl.deliver, index, TOPIC, b"{}") == 1
