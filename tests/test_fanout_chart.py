"""bench/fanout_chart.py: each system keeps its colour from chart to chart, and
a panel without a value at some N says so instead of drawing nothing."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fanout_chart  # noqa: E402


def test_each_system_has_the_same_colour_whatever_else_ran():
    alone = fanout_chart.colours(["decnet"])
    full = fanout_chart.colours(["redis", "zmq", "decnet-pure", "decnet", "nats", "decnet-asyncio"])
    reordered = fanout_chart.colours(["nats", "decnet", "redis"])
    assert alone["decnet"] == full["decnet"] == reordered["decnet"]
    assert full["nats"] == reordered["nats"] and full["redis"] == reordered["redis"]
    assert len(set(full.values())) == len(full)
    assert fanout_chart.colours(["other", "decnet"])["other"] not in fanout_chart.COLOURS.values()


def test_a_value_measured_at_no_n_is_said_not_measured(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    texts = []
    original = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text", lambda self, *a, **k: texts.append(a[2]) or original(self, *a, **k))
    rows = [{"system": s, "subs": n, "rate": 1e5, "sub_us": 1.0, "p99_us": None if n == 50 else 100.0}
            for s in ("decnet", "nats") for n in (1, 10, 50)]
    assert fanout_chart.chart(rows, str(tmp_path / "c.png")) is None
    assert texts == ["not measured"] and (tmp_path / "c.png").stat().st_size > 0
