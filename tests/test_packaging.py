"""The compiled hot path is the default, the opt-out works, and a failed build says so."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import IMPLS, NOT_BUILT

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import decnet.bus as b; print(b.ACCELERATED, b.SubscriptionIndex.__module__, b.matches.__module__ if hasattr(b.matches, '__module__') else '')"


def fresh_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "DECNET_BUS_NO_EXTENSIONS"}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True).stdout.split()


def test_compiled_is_the_default_in_a_fresh_process():
    if "compiled" not in IMPLS:
        pytest.skip(NOT_BUILT)
    accelerated, module, _ = fresh_python(PROBE)
    assert accelerated == "True"
    assert module == "decnet.bus._fastmatch"


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_env_var_selects_the_twin_at_run_time(value):
    accelerated, module, _ = fresh_python(PROBE, DECNET_BUS_NO_EXTENSIONS=value)
    assert accelerated == "False"
    assert module == "decnet.bus._pure.index"


@pytest.mark.parametrize("value", ["0", "", "false"])
def test_env_var_off_values_keep_the_default(value):
    accelerated, _, _ = fresh_python(PROBE, DECNET_BUS_NO_EXTENSIONS=value)
    assert accelerated == str("compiled" in IMPLS)


def source_copy(tmp_path):
    """The project's sources without build products, as a fresh checkout has them."""
    dest = tmp_path / "src"
    # _fastmatch.html is Cython's annotated source (cython -a), not a file of the project.
    ignore = shutil.ignore_patterns("*.so", "*.c", "__pycache__", "*.egg-info", "build", ".venv", "_fastmatch.html")
    shutil.copytree(ROOT / "decnet", dest / "decnet", ignore=ignore)
    shutil.copytree(ROOT / "docs", dest / "docs")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    return dest


def pip_wheel(src, out, **env):
    environ = {k: v for k, v in os.environ.items() if k != "DECNET_BUS_NO_EXTENSIONS"}
    environ.update(env)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(out), str(src)]
    return subprocess.run(cmd, capture_output=True, text=True, env=environ)


def test_build_without_a_compiler_fails_loudly_and_names_the_opt_out(tmp_path):
    pytest.importorskip("Cython")
    out = tmp_path / "out"
    out.mkdir()
    result = pip_wheel(source_copy(tmp_path), out, CC="false", LDSHARED="false")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "could not build the compiled hot path" in output
    assert "DECNET_BUS_NO_EXTENSIONS=1" in output
    assert not list(out.glob("*.whl"))


def test_opt_out_builds_a_pure_python_wheel(tmp_path):
    result = pip_wheel(source_copy(tmp_path), tmp_path / "out", DECNET_BUS_NO_EXTENSIONS="1", CC="false")
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / "out").glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "decnet/bus/_pure/__init__.py" in names
    # The Cython sources ship too (the sdist builds from them): every include file.
    assert {f"decnet/bus/_{part}.pxi" for part in ("topics", "index", "codec", "delivery", "routing")} <= set(names)
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    # The documents go to <prefix>/share/doc/decnet-bus/, which the unit's Documentation= names.
    docs = {n.rsplit("/", 1)[1] for n in names if "/data/share/doc/decnet-bus/" in n}
    assert docs == {p.name for p in (ROOT / "docs").glob("*.md")}

    # The live page's files (decnet/web/page.py serves them from the package).
    assert {f"decnet/web/static/{name}" for name in ("live.html", "live.js", "live.css", "favicon.svg")} <= set(names)


def test_make_run_installs_only_when_what_it_builds_from_changed(tmp_path):
    """``make run`` re-runs ``pip install -e .`` only when the packaging files
    or the Cython sources are newer than its stamp (``make -n -W FILE``: as if
    FILE had just changed; nothing is run)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed").touch()  # after the python, after every source of the checkout

    def dry_run(*args: str) -> str:
        cmd = [make, "-n", "-C", str(ROOT), "run", f"VENV={venv}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    assert "pip install" not in dry_run() and "decnet bus" in dry_run()
    cython = [*(ROOT / "decnet" / "bus").glob("*.pyx"), *(ROOT / "decnet" / "bus").glob("*.pxi")]
    sources = ["pyproject.toml", "setup.py", *(str(p.relative_to(ROOT)) for p in cython)]
    assert "decnet/bus/_fastmatch.pyx" in sources and "decnet/bus/_routing.pxi" in sources
    for source in sources:
        assert "pip install -q -e ." in dry_run("-W", source), source
    assert "pip install" not in dry_run("-W", "decnet/bus/base.py")
