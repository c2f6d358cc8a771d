import subprocess
import sys

from typer.testing import CliRunner

import decnet.bus
from decnet.cli import app


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_info_reports_the_hot_path_in_use():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0
    assert f"decnet-bus {decnet.bus.__version__}" in result.output
    expected = "compiled (Cython)" if decnet.bus.ACCELERATED else "pure Python"
    assert expected in result.output


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "decnet", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage" in result.stdout
