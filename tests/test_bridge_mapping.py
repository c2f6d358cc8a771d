"""The bridge's rules without any I/O: pattern cover and overlap (against
brute force), the merge that makes an event cross once, the subject mapping
both ways, and the guards (system.bus.*, invalid topics, second copies)."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decnet.bus import matches
from decnet.bus.bridge import BridgeConfig, ConfigError, Mapping, MappingError, covers, merge, overlaps
from decnet.bus.bridge.mapping import Dedupe

TOPICS = [".".join(t) for n in range(1, 6) for t in itertools.product("abc", repeat=n)]


@st.composite
def patterns(draw):
    n = draw(st.integers(1, 3))
    tokens = [draw(st.sampled_from(["a", "b", "*"])) for _ in range(n)]
    if draw(st.booleans()):
        tokens[-1] = ">"
    return ".".join(tokens)


@given(patterns(), patterns())
def test_covers_and_overlaps_agree_with_brute_force(p, q):
    matched_p = {t for t in TOPICS if matches(p, t)}
    matched_q = {t for t in TOPICS if matches(q, t)}
    assert covers(p, q) == (matched_q <= matched_p)
    assert overlaps(p, q) == bool(matched_p & matched_q)


@given(st.lists(patterns(), min_size=1, max_size=5))
def test_merge_keeps_the_union_and_no_pattern_another_covers(given_patterns):
    merged = merge(given_patterns)
    union = {t for t in TOPICS if any(matches(p, t) for p in given_patterns)}
    assert {t for t in TOPICS if any(matches(p, t) for p in merged)} == union
    assert not any(covers(a, b) for a, b in itertools.permutations(merged, 2))


def test_merge_examples():
    assert merge(["decky.>", "decky.*.state", "decky.>"]) == ("decky.>",)
    assert merge(["decky.*.state", "decky.>"]) == ("decky.>",)
    assert merge(["a.*.c", "a.b.*"]) == ("a.*.c", "a.b.*")


def test_subjects_both_ways_and_what_never_crosses():
    m = Mapping("h1", ["decky.>", "decky.*.state", ">"], ["decky.>"], prefix="fleet.eu")
    assert m.exports == (">",) and m.import_subjects == ("fleet.eu.decky.>",)
    assert m.subject("decky.d1.state") == "fleet.eu.decky.d1.state"
    assert m.topic("fleet.eu.decky.d1.state") == "decky.d1.state"
    assert not m.exported("system.bus.health") and m.exported("system.bridge.h1.health")
    for subject in ("fleet.eu.decky.a*b.state", "fleet.eu.system.bus.health", "other.decky.d1", "fleet.eu.",
                    "fleet.eu.decky.é", "fleet.eu." + "a" * 256):
        assert m.topic(subject) is None, subject
    assert not m.overlapping
    assert Mapping("h1", [], ["a.*.c", "a.b.*"]).overlapping


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "a.b"}, "--name"),
    ({"name": "a*"}, "--name"),
    ({"prefix": "decnet.*"}, "--prefix"),
    ({"prefix": ""}, "--prefix"),
    ({"exports": ["system.bus.>"]}, "never exported"),
    ({"exports": ["system.bus.health"]}, "never exported"),
    ({"exports": ["a.>.b"]}, "--export"),
    ({"imports": ["a..b"]}, "--import"),
])
def test_bad_names_and_patterns_are_refused_with_the_option_named(kwargs, message):
    args = {"name": "h1", "exports": ["decky.>"], "imports": [], "prefix": "decnet", **kwargs}
    with pytest.raises(MappingError, match=message.replace("*", r"\*")):
        Mapping(args["name"], args["exports"], args["imports"], args["prefix"])


def test_system_wide_patterns_may_be_exported_but_system_bus_topics_never_cross():
    m = Mapping("h1", [">", "system.>"], [])
    assert not m.exports_topic("system.bus.health")
    assert m.exports_topic("system.bridge.h1.health")


def test_dedupe_drops_second_copies_per_origin_and_run():
    d = Dedupe(max_origins=2)
    assert not d.duplicate("a", "e1.1")
    assert d.duplicate("a", "e1.1")  # the copy from a second subscription
    assert not d.duplicate("b", "f.1")  # another origin has its own numbers
    assert not d.duplicate("a", "e1.2")
    assert not d.duplicate("a", "e2.1")  # a restarted bridge starts a new run
    assert not d.duplicate("a", None) and not d.duplicate("a", "junk")
    assert not d.duplicate("c", "g.1")  # a third origin pushes out the oldest
    assert len(d._last) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"servers": []}, "at least one NATS server"),
    ({"servers": ["http://x:1"]}, "expected nats://"),
    ({"servers": ["nats://x:port"]}, "not a number"),
    ({"exports": [], "imports": []}, "nothing would cross"),
    ({"tls_cert": "/etc/hostname"}, "go together"),
    ({"tls_ca": "/nonexistent/ca.pem"}, "not a readable file"),
    ({"user": "u"}, "no password"),
    ({"password": "p"}, "needs --user"),
    ({"health_interval": -1}, "health-interval"),
])
def test_config_errors_say_what_to_fix(kwargs, message):
    config = BridgeConfig(**{"servers": ["nats://127.0.0.1:4222"], "exports": ["decky.>"], "name": "h1", **kwargs})
    with pytest.raises(ConfigError, match=message):
        config.check()


def test_the_password_never_shows_in_the_config_repr():
    config = BridgeConfig(servers=["nats://127.0.0.1:1"], exports=["a"], user="u", password="s3cret-pw")
    assert "s3cret-pw" not in repr(config)
