"""The install and uninstall scripts, run for real into a temp root, and the systemd unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

INSTALL = REPO / "packaging" / "install.sh"
UNINSTALL = REPO / "packaging" / "uninstall.sh"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    result = subprocess.run([str(INSTALL), "--root", str(root)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def _keep_inside(root: Path) -> Path:
    """Point the installed configuration's paths into the temp root (the shipped config
    names the host's /var/lib, /var/log, /run and /etc/hosts.deny)."""
    config = root / "etc/arguard/arguard.toml"
    text = config.read_text()
    for host_path in ("/var/lib/arguard", "/var/log/arguard", "/run/arguard",
                      "/etc/arguard", "/etc/hosts.deny"):
        text = text.replace(f'"{host_path}', f'"{root}{host_path}')
    config.write_text(text)
    return config


def test_install_puts_everything_in_place(installed: Path):
    root = installed
    assert (root / "opt/arguard/bin/arguard").is_file()
    assert (root / "etc/arguard/arguard.toml").read_text() == \
        (REPO / "conf/arguard.toml").read_text()
    for directory in ("etc/arguard/decoders.d", "etc/arguard/rules.d",
                      "etc/arguard/active-response/bin", "var/lib/arguard", "var/log/arguard"):
        assert (root / directory).is_dir(), directory
    assert (root / "var/lib/arguard").stat().st_mode & 0o777 == 0o700
    assert (root / "etc/systemd/system/arguard.service").is_file()
    assert (root / "etc/logrotate.d/arguard").is_file()
    assert os.readlink(root / "usr/local/sbin/arguard") == "/opt/arguard/bin/arguard"
    version = subprocess.run([str(root / "opt/arguard/bin/arguard"), "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.startswith("arguard ")


def test_installed_arguard_checks_its_shipped_ruleset(installed: Path):
    """The venv install carries the decoders and rules (package data), not just the code."""
    result = subprocess.run([str(installed / "opt/arguard/bin/arguard"), "check-config",
                             "-c", str(installed / "etc/arguard/arguard.toml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shipped = sum(len(tomllib.loads(f.read_text()).get("rule", []))
                  for f in (REPO / "rules").glob("*.toml"))
    assert f" {shipped} rules," in result.stdout, result.stdout


def test_reinstall_keeps_an_edited_config(installed: Path):
    config = installed / "etc/arguard/arguard.toml"
    original = config.read_text()
    edited = original + "\n# edited by the operator\n"
    config.write_text(edited)
    try:
        result = subprocess.run([str(INSTALL), "--root", str(installed)], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=600)
        assert result.returncode == 0, result.stderr
        assert config.read_text() == edited
        assert (installed / "etc/arguard/arguard.toml.dist").read_text() == original
    finally:
        config.write_text(original)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
                    reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(installed: Path, tmp_path: Path):
    """`systemd-analyze verify` checks ExecStart exists, so the unit is verified with
    ExecStart/ExecReload pointing at the arguard installed in the temp root."""
    unit = (installed / "etc/systemd/system/arguard.service").read_text()
    assert "ExecStart=/opt/arguard/bin/arguard run" in unit
    assert "Type=notify" in unit
    copy = tmp_path / "arguard.service"
    copy.write_text(unit.replace("/opt/arguard/bin/arguard",
                                 str(installed / "opt/arguard/bin/arguard")))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "arguard.service" not in result.stderr, result.stderr


def test_uninstall_lifts_blocks_first_and_keeps_config(tmp_path: Path):
    root = tmp_path / "root"
    result = subprocess.run([str(INSTALL), "--root", str(root)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, result.stderr
    config = _keep_inside(root)
    hosts_deny = root / "etc/hosts.deny"
    hosts_deny.write_text("# admin's own line\nsshd: 192.0.2.99\n")
    arguard = str(root / "opt/arguard/bin/arguard")
    block = subprocess.run([arguard, "block", "203.0.113.7", "--command", "host-deny",
                            "--timeout", "1h", "-c", str(config)], capture_output=True, text=True)
    assert block.returncode == 0, block.stdout + block.stderr
    assert "203.0.113.7" in hosts_deny.read_text()

    result = subprocess.run([str(UNINSTALL), "--root", str(root)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert hosts_deny.read_text() == "# admin's own line\nsshd: 192.0.2.99\n"
    assert not (root / "opt/arguard").exists()
    assert not (root / "etc/systemd/system/arguard.service").exists()
    assert not (root / "usr/local/sbin/arguard").exists()
    assert config.exists()
