"""bench/scale_counter.py and the fairness figures of bench/scale_publishers.py:
the per-publisher counts a subscriber reports, and Jain's index over them."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import scale_publishers  # noqa: E402
from scale_counter import PerPublisherCounter  # noqa: E402


def event(p, seq, ts=0.0):
    return {"ph": 1, "p": p, "seq": seq, "ts": ts, "decky": "d0", "state": "up", "pad": ""}


def test_counter_counts_per_publisher_and_ends_on_every_end_marker(capsys):
    c = PerPublisherCounter({"phases": 1, "idle_timeout": 5.0, "pubs": 2, "slice": 10.0})
    for seq in (0, 1, 3):  # publisher 0 lost seq 2
        c.on(event(0, seq))
    c.on(event(1, 0, ts=1e-9))  # stamped: a latency sample
    c.on(event(0, -1))
    assert not c.done.is_set()  # publisher 1 has not ended yet
    c.on(event(1, -1))
    assert c.done.is_set()
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["per"] == [3, 1] and done["n"] == 4 and done["holes"] == 1
    assert done["slices"] == [[3], [1]]
    assert done["lat_per"][0] == {"n": 0} and done["lat_per"][1]["n"] == 1


def test_jain_is_one_for_equal_shares_and_one_over_n_for_one_taker():
    assert scale_publishers.jain([5, 5, 5, 5]) == pytest.approx(1.0)
    assert scale_publishers.jain([8, 0, 0, 0]) == pytest.approx(0.25)
    assert scale_publishers.jain([0, 0]) is None


def test_flat_fairness_uses_whole_slices_while_every_publisher_published():
    # One subscriber, two publishers, 0.1 s slices; the first publisher stopped
    # 0.55 s after the subscriber's first event: slices 1..4 count, not 0 nor 5+.
    r = {"pubs": 2, "subs": 1, "sent": [100, 100], "delivered": 100, "expected": 200,
         "slice": 0.1, "firsts": [10.0], "t_sent_min": 10.55,
         "per": [[60, 40]],
         "slices": [[[50, 5, 5, 5, 5, 0, 0], [0, 5, 5, 5, 5, 10, 10]]]}
    fr = scale_publishers.fairness(r, "flat", 500, 1.0)
    assert fr["jain_slices"] == 4 and fr["jain_min"] == pytest.approx(1.0)
    assert fr["jain4_slices"] == 1 and fr["jain4_median"] == pytest.approx(1.0)
    assert fr["minmax"] == pytest.approx(40 / 60) and fr["delivered_pct"] == pytest.approx(50)
