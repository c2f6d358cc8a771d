import pytest

from decnet.bus import TopicError

CASES = [
    ("decky.*.state", "decky.d1.state", True),
    ("decky.*.state", "decky.d1.state.x", False),
    ("decky.*.state", "decky.state", False),
    ("topology.t1.>", "topology.t1.status", True),
    ("topology.t1.>", "topology.t1.mutation.applied", True),
    ("topology.t1.>", "topology.t1", False),
    ("topology.t1.*", "topology.t1.mutation.applied", False),
    (">", "a", True),
    (">", "a.b.c", True),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*.>", "a", False),
    ("*.>", "a.b", True),
    ("a", "a", True),
    ("a", "ab", False),
    ("a.b", "a.c", False),
    ("a.*.c.>", "a.b.c.d.e", True),
    ("a.*.c.>", "a.b.x.d", False),
]


@pytest.mark.parametrize("pattern,topic,expected", CASES)
def test_matches_spec_examples(impl, pattern, topic, expected):
    assert impl.matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern,topic", [("a..b", "a.b"), ("a", "a.*"), ("a*", "a"), ("a", "")])
def test_matches_refuses_invalid_input(impl, pattern, topic):
    with pytest.raises(TopicError):
        impl.matches(pattern, topic)


def test_package_exports_the_picked_matches():
    import decnet.bus

    assert decnet.bus.matches("decky.*.state", "decky.d1.state")


# -- the subscription index: every test with the cache off, tiny (evicting) and default


@pytest.fixture(params=[0, 2, 1024], ids=["nocache", "cache2", "cache1024"])
def index(impl, request):
    return impl.SubscriptionIndex(cache_size=request.param)


def test_lookup_returns_each_matching_subscriber_once(index):
    index.add("decky.*.state", "a")
    index.add("decky.d1.state", "a")
    index.add(">", "a")
    index.add("decky.>", "b")
    index.add("decky.d2.state", "c")
    found = index.lookup("decky.d1.state")
    assert sorted(found) == ["a", "b"]
    assert len(found) == len(set(found))
    assert index.lookup("decky.d2.state") and sorted(index.lookup("decky.d2.state")) == ["a", "b", "c"]
    assert index.lookup("other") == ("a",)


def test_lookup_of_unsubscribed_topic_is_empty(index):
    assert index.lookup("a.b") == ()
    index.add("x.>", 1)
    assert index.lookup("a.b") == ()
    assert index.lookup("x") == ()


def test_add_and_remove_are_idempotent_and_counted(index):
    assert index.add("a.*", "s") is True
    assert index.add("a.*", "s") is False
    assert len(index) == 1
    assert index.remove("a.*", "s") is True
    assert index.remove("a.*", "s") is False
    assert index.remove("never.subscribed", "s") is False
    assert index.remove("a.>", "s") is False
    assert len(index) == 0


def test_add_invalidates_cached_results(index):
    assert index.lookup("decky.d1.state") == ()
    index.add("decky.*.state", "late")
    assert index.lookup("decky.d1.state") == ("late",)
    index.add(">", "later")
    assert sorted(index.lookup("decky.d1.state")) == ["late", "later"]


def test_remove_invalidates_cached_results(index):
    index.add("decky.*.state", "a")
    index.add("decky.d1.>", "b")
    index.add("decky.d1.state", "c")
    assert sorted(index.lookup("decky.d1.state")) == ["a", "b", "c"]
    index.remove("decky.d1.>", "b")
    assert sorted(index.lookup("decky.d1.state")) == ["a", "c"]
    index.remove("decky.*.state", "a")
    assert index.lookup("decky.d1.state") == ("c",)
    index.remove("decky.d1.state", "c")
    assert index.lookup("decky.d1.state") == ()


def test_remove_of_one_subscriber_keeps_the_others(index):
    index.add("a.b", 1)
    index.add("a.b", 2)
    index.remove("a.b", 1)
    assert index.lookup("a.b") == (2,)


def test_full_wildcard_needs_at_least_one_token(index):
    index.add("a.>", "s")
    assert index.lookup("a") == ()
    assert index.lookup("a.b.c") == ("s",)


def test_many_topics_beyond_the_cache_stay_correct(index):
    for i in range(50):
        index.add(f"t.{i}", i)
    index.add("t.*", "all")
    for _ in range(2):
        for i in range(50):
            assert sorted(index.lookup(f"t.{i}"), key=str) == sorted([i, "all"], key=str)


def test_pruning_leaves_an_index_that_still_works(index):
    for pattern in ["a.b.c", "a.*.c", "a.>", "*.*.*", ">"]:
        index.add(pattern, pattern)
    for pattern in ["a.b.c", "a.*.c", "a.>", "*.*.*", ">"]:
        assert index.remove(pattern, pattern)
    assert len(index) == 0
    assert index.lookup("a.b.c") == ()
    index.add("a.*.c", "again")
    assert index.lookup("a.b.c") == ("again",)


def test_add_rejects_bad_patterns(index):
    with pytest.raises(TopicError):
        index.add("a.>.b", "s")
    with pytest.raises(TopicError):
        index.remove("a..b", "s")
    assert len(index) == 0


def test_negative_cache_size_is_refused(impl):
    with pytest.raises(ValueError):
        impl.SubscriptionIndex(cache_size=-1)


def test_cache_is_bounded(impl):
    index = impl.SubscriptionIndex(cache_size=8)
    index.add(">", "s")
    for i in range(100):
        index.lookup(f"t{i}")
    assert index.cached == 8
    assert impl.SubscriptionIndex(cache_size=0).cached == 0


def test_cache_off_caches_nothing(impl):
    index = impl.SubscriptionIndex(cache_size=0)
    index.add(">", "s")
    index.lookup("a")
    assert index.cached == 0


def test_full_cache_evicts_the_oldest_topic_even_after_invalidation(impl):
    """The cache is first in, first out: a pattern added or removed drops the
    cached topics it matches, and the rest keep their order of arrival."""
    index = impl.SubscriptionIndex(cache_size=4)
    index.add(">", "s")
    for topic in ("a.1", "a.2", "b.1", "b.2"):
        index.lookup(topic)
    index.add("a.*", "t")  # drops a.1 and a.2
    assert index.cached == 2
    for topic in ("c.1", "c.2", "c.3"):  # the third evicts the oldest left, b.1
        index.lookup(topic)
    assert index.cached == 4
    index.add("b.1", "u")  # nothing cached to drop if b.1 was the one evicted
    assert index.cached == 4
    index.add("b.2", "u")  # b.2 is still cached
    assert index.cached == 3
    assert set(index.lookup("b.1")) == {"s", "u"}


def test_a_cache_that_every_lookup_misses_stays_right_and_bounded(impl):
    index = impl.SubscriptionIndex(cache_size=16)
    index.add("t.*", "star")
    for i in range(2000):
        topic = f"t.{i % 100}"
        want = {"star", "even"} if i % 100 == 0 and i >= 1000 else {"star"}
        if i == 1000:
            index.add("t.0", "even")
        assert set(index.lookup(topic)) == want
        assert index.cached <= 16
    assert index.cached == 16
