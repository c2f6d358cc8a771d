"""The atheris target (fuzz/fuzz_decoder.py) runs, finds nothing, and really fuzzes.

A short run: ``make fuzz`` is the long one. The properties it checks are in the
target's docstring.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMPLS, NOT_BUILT

TARGET = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_decoder.py"
# libFuzzer's last words on a run that ended normally.
DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)


def test_fuzz_decoder_runs_clean(tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (the test extra has it on x86_64 Linux only)")
    if "compiled" not in IMPLS:
        pytest.skip(NOT_BUILT + ": the target compares it with the pure twin")
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    artifacts.mkdir()
    # 10 s of fuzzing (tens of thousands of inputs); -timeout turns a hang into a failure.
    cmd = [sys.executable, str(TARGET), str(corpus), "-max_total_time=10", "-timeout=10",
           f"-artifact_prefix={artifacts}/"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"the fuzzer found something (saved in {artifacts}):\n{log[-4000:]}"
    assert not list(artifacts.iterdir())
    done = DONE.search(log)
    assert done, f"no libFuzzer summary in the output:\n{log[-4000:]}"
    # Far more than the seed corpus (96 inputs): the mutator ran.
    assert int(done.group(1)) >= 1000, done.group(0)
