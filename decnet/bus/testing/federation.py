"""Simulated hosts for the bridge's tests and benchmarks: ``NatsServer`` (a
``nats-server`` process on a free 127.0.0.1 port, alone or in a cluster, with
optional TLS and users), ``BridgeProcess`` (``decnet bus bridge`` waiting for
READY=1, like BrokerProcess) and ``make_certs`` (a CA, a server and a client
certificate made with the ``openssl`` command).

    with NatsServer() as nats, BrokerProcess(a_sock) as a, BrokerProcess(b_sock) as b, \\
         BridgeProcess(a.path, nats.url, "--name", "a", "--export", "decky.>"), \\
         BridgeProcess(b.path, nats.url, "--name", "b", "--import", "decky.>"):
        ...   # wait for each bridge's health with "live": true, then publish on a, read on b
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .process import READY_TIMEOUT, NotifyProcess, StartError, short_tmpdir, stop_process


def nats_server_path() -> Optional[str]:
    """The ``nats-server`` binary on PATH (or in /usr/sbin, Debian's place), or None."""
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NatsServer:
    """One ``nats-server`` on 127.0.0.1:``port`` (a free one by default).

    ``config`` is extra nats-server configuration (authorization, tls, ...);
    ``cluster_port`` and ``routes`` (other servers' ``cluster_port``) make it
    one node of a cluster named ``decnet-test``. ``restart()`` starts it again
    on the same ports after ``kill()``.
    """

    def __init__(self, port: Optional[int] = None, *, config: str = "", cluster_port: Optional[int] = None,
                 routes: Sequence[int] = (), name: str = "nats", workdir: Optional[os.PathLike] = None) -> None:
        binary = nats_server_path()
        if binary is None:
            raise StartError("nats-server is not installed (Debian: apt-get install nats-server)")
        self.binary = binary
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.config = config
        self.name = name
        self.own_workdir = workdir is None
        self.workdir = short_tmpdir("dnats-") if workdir is None else Path(workdir)
        self.log = self.workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        scheme = "tls" if "tls" in self.config and "verify" in self.config else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        lines = [f"server_name: {self.name}", f"listen: 127.0.0.1:{self.port}", self.config]
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(f"cluster {{ name: decnet-test\n listen: 127.0.0.1:{self.cluster_port}\n routes: [{routes}] }}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = READY_TIMEOUT) -> "NatsServer":
        """Start, and return once the server answers a client with its INFO."""
        conf = self.workdir / f"{self.name}.conf"
        conf.write_text(self.config_text())
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise StartError(f"nats-server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                    if sock.recv(5) == b"INFO ":
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise StartError(f"nats-server did not answer on port {self.port} within {timeout} s:\n{self.output()}")
            time.sleep(0.02)  # polling a port another process opens: there is nothing to wait on

    def restart(self) -> "NatsServer":
        """Start again on the same ports (after ``kill`` or ``stop``)."""
        return self.start()

    def kill(self) -> None:
        """SIGKILL: gone at once, connections reset."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5.0)

    def close(self) -> None:
        """Stop and remove the private directory."""
        self.stop()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def nats_cluster(size: int = 3, config: str = "") -> list[NatsServer]:
    """``size`` NatsServer nodes (not started) routed to each other."""
    ports = [free_port() for _ in range(size)]
    cluster = [free_port() for _ in range(size)]
    return [NatsServer(ports[i], config=config, cluster_port=cluster[i], name=f"n{i}",
                       routes=[p for j, p in enumerate(cluster) if j != i]) for i in range(size)]


class BridgeProcess(NotifyProcess):
    """``decnet bus bridge --socket SOCKET --nats NATS ARGS...`` as a child
    process; ``start`` returns at READY=1 (both pumps running; NATS may not
    be connected yet: wait for a health event whose ``live`` is true).
    ``env`` adds to the environment (DECNET_NATS_PASSWORD)."""

    log_name = "bridge.log"
    stop_timeout = 15.0

    def __init__(self, socket_path: os.PathLike, nats: str, *args: str, loop: str = "uvloop",
                 env: Optional[dict] = None, workdir: Optional[os.PathLike] = None) -> None:
        super().__init__(env, workdir, prefix="dbridge-")
        self.socket = Path(socket_path)
        self.nats = nats
        self.args = args
        self.loop = loop

    def command(self) -> list[str]:
        return [sys.executable, "-m", "decnet", "bus", "bridge", "--socket", str(self.socket), "--nats", self.nats,
                "--loop", self.loop, *self.args]


def make_certs(directory: os.PathLike) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, all signed by the CA, made with the ``openssl`` command;
    also a second CA's client certificate, which the server must refuse.
    Paths by name: ca, server_cert, server_key, client_cert, client_key,
    rogue_cert, rogue_key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StartError("the openssl command is not installed")
    d = Path(directory)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    def ca(name: str) -> None:
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem")

    def leaf(name: str, issuer: str, ext: str) -> None:
        (d / f"{name}.ext").write_text(ext)
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    ca("ca")
    ca("rogue-ca")
    leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    leaf("client", "ca", "extendedKeyUsage=clientAuth\n")
    leaf("rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return {"ca": d / "ca.pem", "server_cert": d / "server.pem", "server_key": d / "server.key",
            "client_cert": d / "client.pem", "client_key": d / "client.key",
            "rogue_cert": d / "rogue.pem", "rogue_key": d / "rogue.key"}
