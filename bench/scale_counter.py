"""A subscriber's counter for several numbered publishers (bench/scale_*.py).

fanout_worker.py's ``Counter`` assumes one publisher: one sequence, one end
marker. With ``pubs`` publishers each payload carries ``"p"``, its
publisher's id, and this counter keeps, per publisher: the events received,
the holes in its sequence, the events received in each ``slice`` seconds
since this subscriber's first event (for the fairness measurements), and the
one-way latency of its stamped (paced) events. A phase ends once every
publisher's end marker came, or on the idle timeout.
"""

from __future__ import annotations

from fanout_worker import Counter, monotonic


def percentiles(samples: list[float], ps=(50, 99)) -> dict:
    """{"p50": µs, ...} of ``samples`` (seconds), nearest rank; empty if none."""
    if not samples:
        return {}
    s = sorted(samples)
    return {f"p{p}": round(s[min(len(s) - 1, int(len(s) * p / 100))] * 1e6, 1) for p in ps}


class PerPublisherCounter(Counter):
    def __init__(self, cfg: dict) -> None:
        self.pubs = cfg["pubs"]
        self.slice = cfg.get("slice") or 0.25
        super().__init__(cfg)

    def _reset(self) -> None:
        super()._reset()
        n = self.pubs
        self.per = [0] * n
        self.expects = [0] * n
        self.slices: list[dict] = [{} for _ in range(n)]
        self.lats: list[list] = [[] for _ in range(n)]
        self.ended: set = set()

    def on(self, d: dict) -> None:
        now = monotonic()
        if d["ph"] != self.phase:
            self.stray += 1
            return
        p = d["p"]
        seq = d["seq"]
        if seq < 0:
            self.ended.add(p)
            self.last = now
            if len(self.ended) >= self.pubs:
                self.finish(timeout=False)
            return
        if self.n == 0:
            self.first = now
        self.n += 1
        self.per[p] += 1
        expect = self.expects[p]
        if seq != expect:
            if seq > expect:
                self.holes += seq - expect
            else:
                self.reorders += 1
        self.expects[p] = seq + 1
        k = int((now - self.first) / self.slice)
        sl = self.slices[p]
        sl[k] = sl.get(k, 0) + 1
        ts = d["ts"]
        if ts:
            self.lats[p].append(now - ts)

    def extra_done(self) -> dict:
        width = 1 + max((max(s) for s in self.slices if s), default=-1)
        return {
            "per": self.per,
            "ended": len(self.ended),
            "slice": self.slice,
            "slices": [[s.get(k, 0) for k in range(width)] for s in self.slices],
            "lat_per": [percentiles(lat) | {"n": len(lat)} for lat in self.lats],
        }
