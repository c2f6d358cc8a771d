"""The systemd units in deploy/ are valid, and say what the broker needs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    decnet = Path(sys.executable).parent / "decnet"
    for unit in ("decnet-bus.service", "decnet-bus.socket"):
        text = (DEPLOY / unit).read_text().replace("/usr/local/bin/decnet", str(decnet))
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "decnet-bus.socket"), str(tmp_path / "decnet-bus.service")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    complaints = [line for line in result.stderr.splitlines() if "decnet-bus" in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_documentation_names_a_file_the_install_creates():
    """``Documentation=`` names a document under the prefix docs/deploy.md installs
    into; pyproject.toml's data-files put docs/*.md there (test_packaging.py checks
    the wheel), and ExecStart= runs the same install's decnet."""
    service = (DEPLOY / "decnet-bus.service").read_text()
    deploy_md = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    [uri] = [line.split("=", 1)[1] for line in service.splitlines() if line.startswith("Documentation=")]
    prefix = "file:///opt/decnet/share/doc/decnet-bus/"
    assert uri.startswith(prefix), uri
    assert (DEPLOY.parent / "docs" / uri[len(prefix):]).is_file()
    assert "python3 -m venv /opt/decnet && /opt/decnet/bin/pip install" in deploy_md
    assert "ln -s /opt/decnet/bin/decnet /usr/local/bin/decnet" in deploy_md
    assert "ExecStart=/usr/local/bin/decnet " in service
    installed = Path(sys.prefix) / "share" / "doc" / "decnet-bus"
    if installed.is_dir():  # a regular install (an editable one installs no data files)
        assert (installed / uri[len(prefix):]).is_file()


def test_units_carry_the_contract():
    service = (DEPLOY / "decnet-bus.service").read_text()
    socket = (DEPLOY / "decnet-bus.socket").read_text()
    for line in ("Type=notify", "User=decnet", "Group=decnet", "RuntimeDirectory=decnet", "UMask=0117", "Restart=always", "WatchdogSec="):
        assert line in service
    for line in ("ListenStream=/run/decnet/bus.sock", "SocketMode=0660", "SocketGroup=decnet"):
        assert line in socket


def test_bridge_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    decnet = Path(sys.executable).parent / "decnet"
    for unit in ("decnet-bus.service", "decnet-bus.socket", "decnet-bus-bridge.service"):
        text = (DEPLOY / unit).read_text().replace("/usr/local/bin/decnet", str(decnet))
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "decnet-bus-bridge.service")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    complaints = [line for line in result.stderr.splitlines() if "decnet-bus" in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_bridge_unit_follows_the_broker_and_keeps_its_hardening():
    bridge = (DEPLOY / "decnet-bus-bridge.service").read_text()
    broker = (DEPLOY / "decnet-bus.service").read_text()
    for line in ("After=decnet-bus.service", "PartOf=decnet-bus.service", "Type=notify", "User=decnet",
                 "Restart=always", "decnet bus bridge --socket /run/decnet/bus.sock",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"):
        assert line in bridge, line
    hardening = broker[broker.index("# Hardening"):broker.index("[Install]")].splitlines()[1:]
    # The broker's hardening, but for the network (NATS is reached over TCP) and the memory bound.
    expected = [line for line in hardening if line and not line.startswith("#")
                and not line.startswith(("PrivateNetwork=", "RestrictAddressFamilies=", "MemoryMax="))]
    missing = [line for line in expected if line not in bridge.splitlines()]
    assert not missing, missing
    assert "--password" not in bridge.replace("--password-file", "")
