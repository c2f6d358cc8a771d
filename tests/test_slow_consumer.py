"""Slow consumers: a subscriber that never reads costs the broker its
queue limit and no more, the loss is counted and told, and nobody else waits.

Short by default; ``DECNET_BUS_STRESS=long`` pushes 1 GiB (docs/RELIABILITY.md).
"""

from __future__ import annotations

import subprocess
import sys
import threading

import orjson

from stress import report, scale

from decnet.bus import UnixBus
from decnet.bus.protocol import encode
from decnet.bus.testing import BrokerProcess, Follower, Raw, rss

MiB = 1024 * 1024
QUEUE_LIMIT = 8 * MiB  # the default
# What the broker may hold beyond the stuck connection's queue: the transport's
# high-water mark (256 KiB) and one drain slice, the healthy reader's share in
# flight, and what the allocator keeps. Documented in docs/RELIABILITY.md.
RSS_OVERHEAD = 24 * MiB
# The healthy subscriber is kept within this many events (~2 MiB) of the
# publisher: well inside its queue, so a loaded machine cannot make it "slow".
HEALTHY_WINDOW = 2000


def _stats(path) -> dict:
    """The broker's counters, as `decnet bus stats --json` prints them."""
    return orjson.loads(subprocess.run(
        [sys.executable, "-m", "decnet", "bus", "stats", "--json", "--socket", str(path)],
        capture_output=True, check=True, timeout=60).stdout)


def test_a_subscriber_that_never_reads_costs_the_broker_its_queue_limit_only(sockdir, loop_name):
    total_bytes = scale(96 * MiB, 1024 * MiB)
    body = orjson.dumps({"pad": "x" * 1000})
    frame_len = len(encode("EVT", "load.0", body))
    count = total_bytes // frame_len // 100 * 100
    with BrokerProcess(sockdir / "bus.sock", "--health-interval", "0.2", loop=loop_name) as proc:
        stuck = Raw(proc.path)
        stuck.send(encode("SUB", "load.>"))
        stuck.until_pong()
        healthy, pub = Raw(proc.path, timeout=60), Raw(proc.path, timeout=60)
        healthy.send(encode("SUB", "load.>"))
        healthy.until_pong()
        pid = proc.proc.pid
        baseline = peak = rss(pid)
        follower = Follower(healthy, count)
        batch = b"".join(encode("PUB", f"load.{i % 10}", body) for i in range(100))
        for i in range(count // 100):
            follower.keep_within(i * 100, HEALTHY_WINDOW)
            pub.send(batch)
            if i % 64 == 0:
                peak = max(peak, rss(pid))
        pub.until_pong()  # the broker has routed (or dropped) every event
        peak = max(peak, rss(pid))
        assert follower.result() == count, "the healthy subscriber must receive every event"

        health = _stats(proc.path)
        # The stuck reader can hold at most its queue and the buffers on the way.
        most_kept = (QUEUE_LIMIT + 2 * MiB) // frame_len
        assert health["dropped"] >= count - most_kept
        report("slow consumer", loop=loop_name, sent_MiB=count * frame_len // MiB, events=count,
               dropped=health["dropped"], rss_baseline_MiB=round(baseline / MiB, 1),
               rss_peak_MiB=round(peak / MiB, 1), over_baseline_MiB=round((peak - baseline) / MiB, 1))
        assert peak - baseline <= QUEUE_LIMIT + RSS_OVERHEAD

        # Once it reads, the stuck subscriber is told how many it lost, in
        # place: what it got plus what it was told of is everything sent.
        stuck.sock.settimeout(60)
        frames = stuck.until_pong()
        evts = sum(f[0] == "EVT" for f in frames)
        told = [orjson.loads(f[2]) for f in frames if f[0] == "ERR"]
        assert told and {e["code"] for e in told} == {"slow_consumer"}
        assert evts + sum(e["dropped"] for e in told) == count
        # Its PING was read while its queue was full: the PONG took the place
        # of the oldest event left, so the count is read again.
        assert sum(e["dropped"] for e in told) == _stats(proc.path)["dropped"]
        stuck.send(encode("PUB", "load.after", b"1"))
        assert [f[1] for f in stuck.until_pong()] == ["load.after"]  # the connection stayed
        for raw in (stuck, healthy, pub):
            raw.close()


def test_a_client_whose_loop_stalls_gets_a_slow_consumer_gap(sockdir, loop_name, run):
    """The public API: a Subscription learns of broker-side drops with a Gap."""
    with BrokerProcess(sockdir / "bus.sock", "--queue-limit", "65536", loop=loop_name) as proc:
        async def main():
            bus = UnixBus(proc.path)
            async with bus.subscribe("load.>") as sub:
                await bus.flush()
                body = orjson.dumps({"pad": "x" * 1000})

                def flood():  # from another thread, while this loop is blocked
                    pub = Raw(proc.path)
                    pub.send(b"".join(encode("PUB", "load.x", body) for _ in range(2000)))
                    pub.until_pong()
                    pub.close()

                worker = threading.Thread(target=flood)
                worker.start()
                worker.join()  # blocks the loop: nobody reads the socket meanwhile
                await bus.publish("load.end", {"end": True})
                events, gaps, ended = 0, [], False
                # The broker puts ERR slow_consumer in front of what follows the
                # drops, but the client hands over a read's EVTs before acting on
                # that read's ERR: when the held publisher's last events and
                # load.end share a read with the ERR, the Gap comes right after.
                async for evt in sub:
                    if evt.gap:
                        gaps.append(evt.reason)
                    elif evt.topic == "load.end":
                        ended = True
                    else:
                        events += 1
                    if ended and gaps:
                        break
            stats = bus.stats()
            await bus.close()
            return events, gaps, stats

        events, gaps, stats = run(main())
    assert "slow_consumer" in gaps
    assert stats["broker_dropped"] > 0
    assert events + stats["broker_dropped"] == 2000


def test_drops_are_told_even_when_the_broker_closes_the_connection(sockdir, loop_name):
    """SIGTERM: the last write to a slow subscriber still says what it lost,
    before the BYE, so what it got plus what it was told of is what was sent."""
    proc = BrokerProcess(sockdir / "bus.sock", "--queue-limit", "65536", loop=loop_name).start()
    try:
        stuck = Raw(proc.path)
        stuck.send(encode("SUB", "load.>"))
        stuck.until_pong()
        pub = Raw(proc.path)
        body = orjson.dumps({"pad": "x" * 1000})
        count = 3000
        pub.send(b"".join(encode("PUB", "load.x", body) for _ in range(count)))
        pub.until_pong()  # all routed, most dropped for the stuck reader
        proc.proc.terminate()  # and read while it shuts down: it waits for us to
        frames = []
        while (frame := stuck.frame()) is not None:
            frames.append(frame)
        # Its exit, not a second SIGTERM: one that lands after the loop closed is not handled.
        proc.proc.wait(10)
    finally:
        code = proc.stop()
    assert code == 0
    assert frames[-1][0] == "BYE"
    told = sum(orjson.loads(f[2])["dropped"] for f in frames if f[0] == "ERR")
    evts = sum(f[0] == "EVT" for f in frames)
    assert told > 0 and evts + told == count
