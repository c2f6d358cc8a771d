#!/usr/bin/env bash
# Install the peer systems bench/fanout.py compares decnet-bus against:
#   nats-server + redis-server (Debian packages) and their Python clients
#   (nats-py, redis, pyzmq) plus matplotlib for the chart and psutil for the
#   servers' CPU time, into the project venv.
# Usage: bash bench/peers.sh        (as root, or with sudo available)
# Same Python packages as `pip install -e '.[bench]'`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$here/.venv}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

debs=(nats-server redis-server)
missing=()
for p in "${debs[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        echo "peers.sh: $p already installed"
    else
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "peers.sh: installing Debian packages: ${missing[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi
# The Debian packages start their own services where an init system runs;
# fanout.py starts private instances (127.0.0.1 / UNIX socket in a temp dir) and
# does not use those.

if [ ! -x "$venv/bin/pip" ]; then
    echo "peers.sh: no venv at $venv (run 'make test' or set VENV=...)" >&2
    exit 1
fi
echo "peers.sh: installing Python clients into $venv: nats-py redis pyzmq matplotlib psutil"
"$venv/bin/pip" install nats-py redis pyzmq matplotlib psutil

echo "peers.sh: done."
command -v nats-server >/dev/null && echo "  nats-server: $(nats-server --version 2>&1 | head -1)"
command -v redis-server >/dev/null && echo "  redis-server: $(redis-server --version 2>&1 | head -1)"
"$venv/bin/python" - <<'PY'
import importlib, importlib.metadata as md
for m, dist in (("nats", "nats-py"), ("redis", "redis"), ("zmq", "pyzmq"), ("matplotlib", "matplotlib"), ("psutil", "psutil")):
    try:
        importlib.import_module(m)
        print(f"  {dist}: {md.version(dist)}")
    except Exception as e:
        print(f"  {dist}: NOT importable ({e})")
PY
