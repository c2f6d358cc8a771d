"""bench/scale_subscriptions.py's workload is what its table says: every
event matches exactly 1 % of the subscriptions (or exactly 10), no
connection holds a pattern twice, and the expected count per connection is
what the matching rules give."""

import fnmatch
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import scale_subscriptions as S  # noqa: E402

from decnet.bus import matches  # noqa: E402

EVENTS = 1000


def matcher(system):
    if system == "redis":
        return lambda pattern, topic: fnmatch.fnmatchcase(topic, pattern)
    return matches


@pytest.mark.parametrize("system", ["decnet", "redis"])
@pytest.mark.parametrize("mode,total,conns", [("pct", 1000, 200), ("pct", 3000, 200), ("fixed", 1000, 200), ("pct", 100, 200)])
def test_each_event_matches_what_the_series_says(system, mode, total, conns):
    patterns, expect = S.plan(system, mode, total, conns, EVENTS)
    assert sum(map(len, patterns)) == total
    assert all(len(p) == len(set(p)) for p in patterns)
    match = matcher(system)
    topics = [S.topic(e) for e in range(EVENTS)]
    got = [sum(any(match(p, t) for p in mine) for t in topics) for mine in patterns]
    assert got == expect
    per_event = [sum(match(p, topics[e]) for mine in patterns for p in mine) for e in range(0, EVENTS, 97)]
    assert set(per_event) == {total // 100 if mode == "pct" else S.MATCHING}


def test_the_topics_outnumber_the_brokers_cache():
    from decnet.bus import constants as C

    assert len({S.topic(e) for e in range(S.GROUPS * S.KEYS)}) == S.GROUPS * S.KEYS > 4 * C.DEFAULT_CACHE_SIZE
