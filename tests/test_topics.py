import uuid

import pytest

from decnet.bus import TopicError, topics

VALID_TOPICS = ["a", "decky.d1.state", "topology.t1.mutation.applied", "x" * 255, "!#$%&'()+,-/:;<=?@[]^_`{|}~", "a-b.c_d"]
INVALID_TOPICS = {
    "": "topic is empty",
    "a..b": "token 2 of topic 'a..b' is empty",
    ".a": "token 1 of topic '.a' is empty",
    "a.": "token 2 of topic 'a.' is empty",
    "a b": "character ' ' at offset 1 of topic 'a b' is not printable ASCII",
    "a\nb": "character '\\n' at offset 1 of topic 'a\\nb' is not printable ASCII",
    "dé": "character 'é' at offset 1 of topic 'dé' is not printable ASCII",
    "a.*": "token 2 of topic 'a.*' is the wildcard '*'; wildcards belong in patterns",
    ">": "token 1 of topic '>' is the wildcard '>'; wildcards belong in patterns",
    "a*": "token 1 of topic 'a*' mixes a wildcard with other characters",
    "x" * 256: "is 256 characters long; the limit is 255",
}
VALID_PATTERNS = ["a", ">", "*", "*.>", "decky.*.state", "topology.t1.>", "a.*.*.b", "x" * 255]
INVALID_PATTERNS = {
    "": "pattern is empty",
    "a*": "token 1 of pattern 'a*' mixes a wildcard with other characters",
    "*b": "token 1 of pattern '*b' mixes a wildcard with other characters",
    "a.>.b": "token 2 of pattern 'a.>.b' is '>', which may only be the last token",
    ">.>": "token 1 of pattern '>.>' is '>', which may only be the last token",
    "a..b": "token 2 of pattern 'a..b' is empty",
    ".a": "token 1 of pattern '.a' is empty",
    "a.": "token 2 of pattern 'a.' is empty",
    "a.>>": "token 2 of pattern 'a.>>' mixes a wildcard with other characters",
    "a b": "character ' ' at offset 1 of pattern 'a b' is not printable ASCII",
}


@pytest.mark.parametrize("topic", VALID_TOPICS)
def test_valid_topics_pass(impl, topic):
    assert impl.check_topic(topic) == topic
    assert impl.check_pattern(topic) == topic  # every topic is also a pattern


@pytest.mark.parametrize("topic,message", INVALID_TOPICS.items())
def test_invalid_topics_say_why(impl, topic, message):
    with pytest.raises(TopicError, match=None) as caught:
        impl.check_topic(topic)
    assert message in str(caught.value)
    assert caught.value.code == "bad_topic"


@pytest.mark.parametrize("pattern", VALID_PATTERNS)
def test_valid_patterns_pass(impl, pattern):
    assert impl.check_pattern(pattern) == pattern


@pytest.mark.parametrize("pattern,message", INVALID_PATTERNS.items())
def test_invalid_patterns_say_why(impl, pattern, message):
    with pytest.raises(TopicError) as caught:
        impl.check_pattern(pattern)
    assert message in str(caught.value)
    assert caught.value.code == "bad_pattern"


@pytest.mark.parametrize("value", [None, b"a.b", 3])
def test_non_str_is_a_type_error(impl, value):
    with pytest.raises(TypeError):
        impl.check_topic(value)
    with pytest.raises(TypeError):
        impl.check_pattern(value)


def test_topic_error_is_a_value_error():
    # Callers that already catch ValueError for bad input keep working.
    assert issubclass(TopicError, ValueError)


def test_builders_follow_the_locked_hierarchy():
    tid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert topics.topology_mutation("t1", "applied") == "topology.t1.mutation.applied"
    assert topics.topology_status(7) == "topology.7.status"
    assert topics.topology_all(tid) == f"topology.{tid}.>"
    assert topics.decky_state("d1") == "decky.d1.state"
    assert topics.decky_traffic("d-1_x") == "decky.d-1_x.traffic"
    assert topics.ATTACKER_OBSERVED == "attacker.observed"
    assert topics.SYSTEM_LOG == "system.log"
    assert topics.SYSTEM_BUS_HEALTH == "system.bus.health"


def test_topology_pattern_sees_mutations_and_status():
    pattern = topics.topology_all("t1")
    assert topics.matches(pattern, topics.topology_mutation("t1", "applied"))
    assert topics.matches(pattern, topics.topology_status("t1"))
    assert not topics.matches("topology.t1.*", topics.topology_mutation("t1", "applied"))
    assert topics.matches(topics.ALL_DECKY_STATES, topics.decky_state("d9"))


@pytest.mark.parametrize(
    "bad,reason",
    [("a.b", "contains '.'"), ("a b", "not printable ASCII"), ("*", "wildcard"), (">", "wildcard"), ("", "empty"), ("x>", "wildcard")],
)
def test_builders_reject_ids_that_would_change_the_shape(bad, reason):
    with pytest.raises(TopicError) as caught:
        topics.decky_state(bad)
    assert reason in str(caught.value)
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize("bad", [None, True, 1.5, b"d1"])
def test_builders_reject_non_id_types(bad):
    with pytest.raises(TypeError):
        topics.decky_state(bad)
