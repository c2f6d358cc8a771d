"""bench/sse.py runs end to end: a broker, ``decnet web``, a client process
and the publisher, with tiny numbers (the benchmark itself takes minutes;
docs/BENCHMARKS.md has its results). Only ``decnet`` runs: the reference
needs the ``bench`` extra."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "sse.py"


def run(*args, timeout=120):
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout)


def test_a_smoke_run_delivers_every_frame(tmp_path):
    out = tmp_path / "sse.json"
    result = run("--quick", "--systems", "decnet", "--many", "0", "--frozen-rate", "0", "--rates", "50",
                 "--seconds", "0.2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "| scan | decnet | 10 | 50 |" in result.stdout
    (run_,) = json.loads(out.read_text())["rounds"][0][0]["runs"]
    assert run_["sent"] == 10 and run_["frames"] == 100 and run_["resyncs"] == 0
    assert run_["p99_ms"] is not None and run_["web_us_per_frame"] > 0


def test_help_explains_every_option():
    result = run("--help", timeout=30)
    assert result.returncode == 0
    for option in ("--rounds", "--seconds", "--clients", "--rates", "--many", "--many-rates", "--frozen-rate",
                   "--client-procs", "--drain", "--systems", "--quick", "--json"):
        assert option in result.stdout


def test_a_mistake_is_one_line():
    result = run("--systems", "nats", timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown nats" in result.stderr
