"""The client processes of bench/fanout.py: one publisher or one subscriber.

Started by fanout.py as ``python bench/fanout_worker.py ROLE SYSTEM CONFIG_JSON``;
not meant to be run by hand. Talks to the parent over its pipes: JSON lines on
stdout (``ready``, ``sent``, ``done``, ``result``, ``error``), command lines on
stdin (``go PHASE``, ``stop PHASE``, ``quit``). EOF on stdin means the parent is
gone: the worker exits.

Phases: 1 is the throughput phase (``events`` events as fast as the client
allows, or at ``pub_rate`` events/s when that is set), 2 the latency phase (``rate`` events/s for ``latency_seconds``). Each
published payload is an orjson dict padded to ~200 bytes::

    {"ph": 1, "seq": 17, "ts": 0.0, "decky": "d17", "state": "up", "pad": "xxx…"}

``seq`` -1 marks the end of a phase (sent ``END_MARKERS`` times).

Options the scaling benchmarks (bench/scale_*.py) add to the config, none of
which the fan-out benchmark sets: ``size`` pads the payload to that many bytes
instead of 200; ``pid`` adds ``"p": pid`` to every payload of a publisher, one
of ``pubs`` publishers, and subscribers then count per publisher
(bench/scale_counter.py) and end a phase once every publisher's end marker
came; ``seconds`` makes the throughput phase last that long instead of
``events`` events (paced publishers send ``pub_rate * seconds``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
import time
import traceback

import orjson

N_TOPICS = 100
END_MARKERS = 3
PAYLOAD_BYTES = 200
SUB_PATTERN = "decky.*.state"
ZMQ_WARMUP = b"bench.warmup"
monotonic = time.monotonic


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread included."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


async def quietly(closing, timeout: float = 2.0) -> None:
    """Close a client at the end of a trial without waiting long or minding errors."""
    try:
        await asyncio.wait_for(closing, timeout)
    except Exception:
        pass


def make_pad(size: int = PAYLOAD_BYTES, pid=None) -> str:
    probe = {"ph": 1, "seq": 50000, "ts": 12345.678901, "decky": "d42", "state": "up", "pad": ""}
    if pid is not None:
        probe["p"] = pid
    return "x" * max(0, size - len(orjson.dumps(probe)))


def make_counter(cfg: dict) -> "Counter":
    """The subscriber's counter: per publisher when publishers are numbered."""
    if cfg.get("pubs"):
        from scale_counter import PerPublisherCounter  # beside this file

        return PerPublisherCounter(cfg)
    return Counter(cfg)


class Control:
    """Lines from the parent on stdin, as an asyncio queue (read by a thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line.split())
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ["eof"])

    async def expect(self, verb: str) -> list:
        while True:
            words = await self.queue.get()
            if not words:
                continue
            if words[0] == verb:
                return words
            if words[0] in ("quit", "eof"):
                raise SystemExit(0)


# ---------------------------------------------------------------- subscribers


class Counter:
    """Per-phase counts, holes, first/last delivery time and CPU of one subscriber."""

    def __init__(self, cfg: dict) -> None:
        self.phases = cfg["phases"]
        self.idle_timeout = cfg["idle_timeout"]
        self.phase = 1
        self.go_time = None  # when the parent said go for the current phase
        self.done = asyncio.Event()
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.gaps = 0
        self.gap_lost = 0
        self.holes = 0
        self.reorders = 0
        self.stray = 0
        self.expect = 0
        self.first = None
        self.last = None
        self.samples: list[float] = []
        self.cpu0 = cpu_seconds()

    def on(self, d: dict) -> None:
        # Kept lean, the same for every system: it is counted in each
        # subscriber's CPU per event. The clock is read for the first event,
        # the end marker and (phase 2) each latency sample only.
        if self.phase == 2:
            now = monotonic()
        if d["ph"] != self.phase:
            self.stray += 1
            return
        seq = d["seq"]
        if seq < 0:
            self.last = monotonic()  # right after the last event: the publisher flushed, then sent it
            self.finish(timeout=False)
            return
        if self.n == 0:
            self.first = monotonic()
        self.n += 1
        if seq != self.expect:
            if seq > self.expect:
                self.holes += seq - self.expect
            else:
                self.reorders += 1
        self.expect = seq + 1
        if self.phase == 2:
            self.samples.append(now - d["ts"])

    def gap(self, lost=None, reason="") -> None:
        self.gaps += 1
        if lost:
            self.gap_lost += lost

    def finish(self, timeout: bool, why: str = "") -> None:
        if self.done.is_set():
            return
        cpu = cpu_seconds() - self.cpu0
        lat = None
        if self.phase == 2:
            lat = [round(s * 1e6, 1) for s in self.samples]
        emit(ev="done", ph=self.phase, n=self.n, gaps=self.gaps, gap_lost=self.gap_lost, holes=self.holes,
             reorders=self.reorders, stray=self.stray, first=self.first, last=self.last, cpu=cpu,
             timeout=timeout, why=why, lat=lat, **self.extra_done())
        if self.phase >= self.phases:
            self.done.set()
            return
        self.phase += 1
        self.go_time = None
        self._reset()

    def extra_done(self) -> dict:
        """More fields for the ``done`` message (subclasses)."""
        return {}

    async def serve(self, ctl: Control, task=None, **ready) -> None:
        """Say ready, then count until the last phase ends (or goes idle);
        ``task`` (the receive loop, if any) is cancelled then."""
        self.cpu0 = cpu_seconds()
        emit(ev="ready", loop=type(asyncio.get_running_loop()).__module__, **ready)
        watch = asyncio.ensure_future(self.watchdog(ctl))
        await self.done.wait()
        for t in (task, watch):
            if t is not None:
                t.cancel()

    async def watchdog(self, ctl: Control) -> None:
        """Ends a phase that has been idle for idle_timeout since go or the last event."""
        seen = -1
        self.progress = 0.0
        while not self.done.is_set():
            while not ctl.queue.empty():
                words = ctl.queue.get_nowait()
                if words and words[0] == "go" and int(words[1]) == self.phase:
                    self.go_time = monotonic()
                elif words and words[0] in ("quit", "eof"):
                    self.finish(timeout=True, why="parent quit")
                    self.done.set()
                    return
            if self.go_time is not None:
                if self.n != seen:  # progress since the last look
                    seen, self.progress = self.n, monotonic()
                since = max(self.go_time, self.progress)
                if monotonic() - since > self.idle_timeout:
                    self.last = self.progress if self.n else None
                    self.finish(timeout=True, why=f"idle {self.idle_timeout}s")
            await asyncio.sleep(0.1)


async def sub_decnet(cfg: dict, ctl: Control) -> None:
    from decnet.bus import ACCELERATED, UnixBus

    counter = make_counter(cfg)
    bus = UnixBus(cfg["addr"], name="fanout-sub")
    await bus.connect(timeout=10)
    sub = bus.subscribe(SUB_PATTERN, maxsize=cfg["events"] + 1000)
    await sub.__aenter__()

    async def receive():
        on = counter.on
        async for evt in sub:
            if evt.gap:
                counter.gap(evt.lost, evt.reason)
                continue
            on(evt.payload)

    task = asyncio.ensure_future(receive())
    await counter.serve(ctl, task, accelerated=bool(ACCELERATED))
    emit(ev="stats", dropped=sub.dropped, client=bus.stats())
    await quietly(bus.close())


async def sub_nats(cfg: dict, ctl: Control) -> None:
    import nats
    from nats.errors import SlowConsumerError

    counter = make_counter(cfg)
    loads = orjson.loads

    async def on_error(exc):
        if isinstance(exc, SlowConsumerError):
            counter.gap(reason="slow_consumer")

    async def on_disconnect():
        counter.gap(reason="disconnected")

    nc = await nats.connect(cfg["addr"], name="fanout-sub", error_cb=on_error, disconnected_cb=on_disconnect,
                            connect_timeout=10, max_reconnect_attempts=-1)

    async def cb(msg):
        counter.on(loads(msg.data))

    limit = max(512 * 1024, cfg["events"] + 1000)
    await nc.subscribe(SUB_PATTERN, cb=cb, pending_msgs_limit=limit, pending_bytes_limit=limit * 1024)
    await nc.flush(timeout=10)  # the server has the subscription
    await counter.serve(ctl)
    await quietly(nc.close())


async def sub_redis(cfg: dict, ctl: Control) -> None:
    import redis.asyncio as aioredis

    counter = make_counter(cfg)
    loads = orjson.loads
    r = aioredis.Redis(unix_socket_path=cfg["addr"])
    ps = r.pubsub()
    await ps.psubscribe(SUB_PATTERN)
    # Read the psubscribe confirmation: from then on the server has the pattern.
    deadline = monotonic() + 10
    while True:
        msg = await ps.get_message(timeout=1.0)
        if msg is not None and msg["type"] == "psubscribe":
            break
        if monotonic() > deadline:
            raise RuntimeError("no psubscribe confirmation from redis")

    async def receive():
        on = counter.on
        try:
            async for msg in ps.listen():
                if msg["type"] == "pmessage":
                    on(loads(msg["data"]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. disconnected by client-output-buffer-limit
            counter.gap(reason=f"{type(exc).__name__}: {exc}")
            emit(ev="warn", what=f"redis receive ended: {type(exc).__name__}: {exc}")

    task = asyncio.ensure_future(receive())
    await counter.serve(ctl, task)
    await quietly(r.aclose())


async def sub_zmq(cfg: dict, ctl: Control) -> None:
    import zmq
    import zmq.asyncio

    counter = make_counter(cfg)
    loads = orjson.loads
    ctx = zmq.asyncio.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.LINGER, 0)
    pubs = cfg.get("pubs") or 1
    for i in range(pubs):  # no broker: one endpoint per publisher
        s.connect(zmq_addr(cfg["addr"], i, pubs))
    s.setsockopt(zmq.SUBSCRIBE, b"decky.")
    s.setsockopt(zmq.SUBSCRIBE, ZMQ_WARMUP)
    # Slow joiner: ready only once a warm-up message from each publisher got through.
    warm = set()
    while len(warm) < pubs:
        topic, who = await asyncio.wait_for(s.recv_multipart(), 30)
        if topic == ZMQ_WARMUP:
            warm.add(who)

    async def receive():
        on = counter.on
        recv = s.recv_multipart
        while True:
            topic, payload = await recv()
            if topic.endswith(b".state"):
                on(loads(payload))

    task = asyncio.ensure_future(receive())
    await counter.serve(ctl, task)
    s.close(linger=0)
    ctx.term()


# ---------------------------------------------------------------- publishers


class Publisher:
    """The publish loops, shared by every system; ``send(topic_index, payload_dict)``
    is the system-specific part."""

    def __init__(self, cfg: dict, ctl: Control) -> None:
        self.cfg = cfg
        self.ctl = ctl
        self.pid = cfg.get("pid")
        self.pad = make_pad(cfg.get("size") or PAYLOAD_BYTES, self.pid)
        self.deckies = [f"d{k}" for k in range(N_TOPICS)]
        self.sent = 0  # events of the current phase sent (``seconds`` mode)

    async def run(self, send, flush, after_go=None) -> None:
        cfg = self.cfg
        if self.pid is not None:
            send = self.tagged(send)
        for phase in range(1, cfg["phases"] + 1):
            await self.ctl.expect("go")
            if after_go is not None:
                after_go()
            cpu0 = cpu_seconds()
            t0 = monotonic()
            self.sent = cfg["events"]
            if phase == 1 and cfg.get("seconds"):
                await self.for_seconds(send, cfg["seconds"], cfg.get("pub_rate"))
            elif phase == 1 and cfg.get("pub_rate"):
                await self.paced(send, 1, cfg["pub_rate"], cfg["events"])
            elif phase == 1:
                await self.blast(send, cfg["events"])
            else:
                await self.paced(send, 2, cfg["rate"], int(cfg["rate"] * cfg["latency_seconds"]))
            t_sent = monotonic()
            await flush()
            for _ in range(END_MARKERS):
                await send(0, {"ph": phase, "seq": -1, "ts": 0.0, "decky": "d0", "state": "end", "pad": ""})
            await flush()
            t_flushed = monotonic()
            cpu_loop = cpu_seconds() - cpu0
            emit(ev="sent", ph=phase, t0=t0, t_sent=t_sent, t_flushed=t_flushed, cpu_loop=cpu_loop, n=self.sent)
            await self.ctl.expect("stop")
            emit(ev="result", ph=phase, t0=t0, t_sent=t_sent, t_flushed=t_flushed, cpu_loop=cpu_loop,
                 cpu=cpu_seconds() - cpu0, **self.extra())
        await self.ctl.expect("quit")

    def extra(self) -> dict:
        return {}

    def tagged(self, send):
        """``send`` with this publisher's id added to every payload."""
        pid = self.pid

        async def send_tagged(k, d):
            d["p"] = pid
            await send(k, d)

        return send_tagged

    async def for_seconds(self, send, seconds: float, rate) -> None:
        """Phase 1 for ``seconds``: paced at ``rate`` (stamped), or as fast as
        the client allows (the clock read every 64 events)."""
        if rate:
            self.sent = int(rate * seconds)
            await self.paced(send, 1, rate, self.sent)
            return
        deckies, pad = self.deckies, self.pad
        end = monotonic() + seconds
        i = 0
        while True:
            if i % 64 == 0 and monotonic() >= end:
                break
            k = i % N_TOPICS
            await send(k, {"ph": 1, "seq": i, "ts": 0.0, "decky": deckies[k], "state": "up", "pad": pad})
            i += 1
        self.sent = i

    async def blast(self, send, events: int) -> None:
        deckies, pad = self.deckies, self.pad
        for i in range(events):
            k = i % N_TOPICS
            await send(k, {"ph": 1, "seq": i, "ts": 0.0, "decky": deckies[k], "state": "up", "pad": pad})

    async def paced(self, send, phase: int, rate: float, total: int) -> None:
        """``total`` events at ``rate`` events/s, each stamped when sent.

        Event i is due at t0 + i/rate; the loop sleeps only while ahead and
        sends without sleeping while behind. It never spins: uvloop's timers
        have millisecond resolution (a sleep under 0.5 ms returns at once), and
        a publisher that busy-waits for its next due time takes one of the two
        cores from the broker and subscriber, which showed up as a ~500 µs
        p99 on uvloop only. Sending up to 0.5 ms early is harmless: the
        latency is measured from the stamp."""
        deckies, pad = self.deckies, self.pad
        t0 = monotonic()
        for i in range(total):
            delay = t0 + i / rate - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            k = i % N_TOPICS
            await send(k, {"ph": phase, "seq": i, "ts": monotonic(), "decky": deckies[k], "state": "up", "pad": pad})


async def pub_decnet(cfg: dict, ctl: Control) -> None:
    from decnet.bus import ACCELERATED, UnixBus

    bus = UnixBus(cfg["addr"], name="fanout-pub")
    await bus.connect(timeout=10)
    topics = [f"decky.d{k}.state" for k in range(N_TOPICS)]
    publish = bus.publish

    async def send(k, d):
        await publish(topics[k], d)

    async def flush():
        await bus.flush(timeout=60)

    p = Publisher(cfg, ctl)
    p.extra = lambda: {"dropped": bus.dropped, "client": bus.stats()}
    emit(ev="ready", accelerated=bool(ACCELERATED), loop=type(asyncio.get_running_loop()).__module__)
    await p.run(send, flush)
    await quietly(bus.close())


async def pub_nats(cfg: dict, ctl: Control) -> None:
    import nats

    nc = await nats.connect(cfg["addr"], name="fanout-pub", connect_timeout=10)
    topics = [f"decky.d{k}.state" for k in range(N_TOPICS)]
    dumps = orjson.dumps
    publish = nc.publish

    async def send(k, d):
        await publish(topics[k], dumps(d))

    async def flush():
        await nc.flush(timeout=60)

    p = Publisher(cfg, ctl)
    emit(ev="ready", loop=type(asyncio.get_running_loop()).__module__)
    await p.run(send, flush)
    await quietly(nc.close())


async def pub_redis(cfg: dict, ctl: Control) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis(unix_socket_path=cfg["addr"])
    await r.ping()
    topics = [f"decky.d{k}.state" for k in range(N_TOPICS)]
    dumps = orjson.dumps
    publish = r.publish

    async def send(k, d):
        await publish(topics[k], dumps(d))

    async def flush():
        await r.ping()  # each publish already waited for its reply

    p = Publisher(cfg, ctl)
    emit(ev="ready", loop=type(asyncio.get_running_loop()).__module__)
    await p.run(send, flush)
    await quietly(r.aclose())


async def pub_zmq(cfg: dict, ctl: Control) -> None:
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.LINGER, 0)
    s.bind(zmq_addr(cfg["addr"], cfg.get("pid", 0), cfg.get("pubs") or 1))
    topics = [f"decky.d{k}.state".encode() for k in range(N_TOPICS)]
    dumps = orjson.dumps
    send_multipart = s.send_multipart
    warming = True

    async def warm():
        # Until go: keep sending warm-ups so late joiners see one and report ready.
        while warming:
            await send_multipart([ZMQ_WARMUP, str(cfg.get("pid", 0)).encode()])
            await asyncio.sleep(0.02)

    def stop_warm():
        nonlocal warming
        warming = False

    async def send(k, d):
        await send_multipart([topics[k], dumps(d)])

    async def flush():
        pass  # nothing to wait for: the io thread sends; the parent waits for the subscribers

    warm_task = asyncio.ensure_future(warm())
    p = Publisher(cfg, ctl)
    emit(ev="ready", loop=type(asyncio.get_running_loop()).__module__)
    await p.run(send, flush, after_go=stop_warm)
    stop_warm()
    await warm_task
    s.close(linger=0)
    ctx.term()


def zmq_addr(addr: str, pid: int, pubs: int) -> str:
    """Publisher ``pid``'s endpoint: ``addr`` itself when it is the only one."""
    return addr if pubs == 1 else f"{addr}-{pid}"


SUBS = {"decnet": sub_decnet, "nats": sub_nats, "redis": sub_redis, "zmq": sub_zmq}
PUBS = {"decnet": pub_decnet, "nats": pub_nats, "redis": pub_redis, "zmq": pub_zmq}


async def amain(role: str, kind: str, cfg: dict) -> None:
    ctl = Control()
    fn = (PUBS if role == "pub" else SUBS)[kind]
    await fn(cfg, ctl)


def main() -> None:
    role, kind, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        if cfg["loop"] == "uvloop":
            import uvloop

            uvloop.run(amain(role, kind, cfg))
        else:
            asyncio.run(amain(role, kind, cfg))
    except SystemExit:
        raise
    except BaseException as exc:
        emit(ev="error", what=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
        sys.stderr.write(traceback.format_exc())
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # do not wait for the daemon stdin thread or lingering sockets


if __name__ == "__main__":
    main()
