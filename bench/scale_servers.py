"""What the scale benchmarks share (bench/scale_subscriptions.py,
bench/scale_idle.py): a server per trial (the decnet broker, nats-server,
redis-server), worker processes that hold many connections
(bench/scale_worker.py), their counts, and the server's readings (CPU time,
RSS) through decnet.bus.testing.

The process plumbing (spawn with PDEATHSIG, stop, free ports, machine
information) is bench/fanout.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from fanout import ROOT, _live, _pdeathsig, free_port, machine_info, spawn, stop, stop_many, wait_connectable  # noqa: F401

from decnet.bus.testing import BrokerProcess, cpu_time, rss

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "scale_worker.py")


class Server:
    """One server for one trial: ``system`` is decnet, nats or redis;
    ``address`` is what scale_worker.py connects to; ``pid`` what is read.
    ``root``: the checkout the decnet broker runs from (another one for a
    baseline, built in place)."""

    def __init__(self, system: str, tmp: str, decnet_args: tuple = (), root: str = ROOT) -> None:
        self.system = system
        self.tmp = tmp
        self.proc = None
        self.broker = None
        log = os.path.join(tmp, "server.log")
        if system == "decnet":
            env = {k: v for k, v in os.environ.items() if k != "DECNET_BUS_NO_EXTENSIONS"}
            if root != ROOT:  # another checkout's broker (a baseline): its code first
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            self.broker = BrokerProcess(os.path.join(tmp, "bus.sock"), "--log-level", "warning", *decnet_args,
                                        env=env, workdir=tmp)
            self.broker.start(cwd=root, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_pdeathsig)
            self.proc = self.broker.proc
            _live.append(self.proc)
            self.address = str(self.broker.path)
        elif system == "nats":
            port = free_port()
            self.proc = spawn([shutil.which("nats-server"), "-a", "127.0.0.1", "-p", str(port)], None, log, pipes=False)
            wait_connectable(self.proc, socket.AF_INET, ("127.0.0.1", port))
            self.address = f"127.0.0.1:{port}"
        elif system == "redis":
            path = os.path.join(tmp, "redis.sock")
            # maxclients: redis refuses past 10,000 by default; client-output-buffer-limit
            # off for pub/sub so a burst is queued rather than the subscriber cut off.
            cmd = [shutil.which("redis-server"), "--port", "0", "--unixsocket", path, "--save", "",
                   "--appendonly", "no", "--dir", tmp, "--maxclients", "20000",
                   "--client-output-buffer-limit", "pubsub 0 0 0"]
            self.proc = spawn(cmd, None, log, pipes=False)
            wait_connectable(self.proc, socket.AF_UNIX, path)
            self.address = path
        else:
            raise ValueError(system)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds so far (``decnet.bus.testing.cpu_time``: schedstat, all threads)."""
        return cpu_time(self.pid).fine

    def rss(self) -> int:
        return rss(self.pid)

    def stop(self) -> None:
        stop(self.proc)


class Workers:
    """``conns`` (one pattern list per connection) split over ``n`` scale_worker.py processes."""

    def __init__(self, system: str, address: str, conns: list[list[str]], n: int, tmp: str, timeout: float = 120.0) -> None:
        self.procs = []
        self.sizes = []
        n = max(1, min(n, len(conns)))
        per = -(-len(conns) // n)
        for w in range(n):
            part = conns[w * per:(w + 1) * per]
            if not part:
                continue
            spec = os.path.join(tmp, f"worker{w}.json")
            with open(spec, "w") as f:
                json.dump({"system": system, "address": address, "conns": part}, f)
            proc = spawn([sys.executable, WORKER, spec], None, os.path.join(tmp, f"worker{w}.log"), pipes=True)
            self.procs.append(proc)
            self.sizes.append(len(part))
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            msg = self._read(proc, deadline)
            if msg.get("ev") != "ready":
                raise RuntimeError(f"worker said {msg}")

    @staticmethod
    def _read(proc, deadline: float) -> dict:
        import select

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"worker {proc.pid} silent: {_tail(proc)}")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"worker {proc.pid} exited: {_tail(proc)}")
                return json.loads(line)

    def counts(self) -> list[int]:
        """Events each connection received since it was ready, in connection order."""
        for proc in self.procs:
            proc.stdin.write("counts\n")
            proc.stdin.flush()
        out: list[int] = []
        deadline = time.monotonic() + 30
        for proc in self.procs:
            out += self._read(proc, deadline)["n"]
        return out

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except OSError:
                pass
        stop_many(self.procs, exit_wait=5.0)


def _tail(proc) -> str:
    try:
        with open(proc.log_path, "rb") as f:
            return " | ".join(f.read().decode(errors="replace").strip().splitlines()[-5:])
    except OSError:
        return ""


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def tmpdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class Trial:
    """One trial's bracket: its temp dir, what it started (stopped in reverse
    order at the end, however it ends) and its outcome in ``res``: "ok", or
    "failed: why" — one failed trial is reported and the run goes on.

        with Trial(res, "scale-idle-decnet-") as trial:
            server = trial.own(Server(...), "stop")
    """

    def __init__(self, res: dict, prefix: str) -> None:
        self.res = res
        self.tmp = tmpdir(prefix)
        self._undo: list = []

    def own(self, thing, stop: str = "close"):
        """``thing``, whose method ``stop`` is called when the trial ends."""
        self._undo.append(getattr(thing, stop))
        return thing

    def __enter__(self) -> "Trial":
        return self

    def __exit__(self, kind, error, tb) -> bool:
        self.res["status"] = "ok" if error is None else f"failed: {error}"
        for undo in reversed(self._undo):
            undo()
        self.res["load_after"] = round(load(), 2)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return kind is None or issubclass(kind, Exception)
