"""The install and uninstall scripts, run for real into a temp root, and the systemd unit."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from arguard.cli import build_parser
from arguard.config import Paths, load_config
from arguard.respond.actions import action_type
from tests.conftest import REPO

INSTALL = REPO / "packaging" / "install.sh"
UNINSTALL = REPO / "packaging" / "uninstall.sh"


ADMIN = "198.51.100.77"
SSH_CONNECTION = f"{ADMIN} 50022 192.0.2.1 22"


def install(root: Path) -> subprocess.CompletedProcess:
    """install.sh --root ROOT, run as from an SSH session of ADMIN's."""
    result = subprocess.run([str(INSTALL), "--root", str(root)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=600,
                            env={**os.environ, "SSH_CONNECTION": SSH_CONNECTION})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def installation(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("root")
    return root, install(root)


@pytest.fixture(scope="module")
def installed(installation) -> Path:
    return installation[0]


def test_install_puts_everything_in_place(installed: Path):
    root = installed
    assert (root / "opt/arguard/bin/arguard").is_file()
    for directory in ("etc/arguard/decoders.d", "etc/arguard/rules.d",
                      "etc/arguard/active-response/bin", "var/lib/arguard", "var/log/arguard"):
        assert (root / directory).is_dir(), directory
    assert (root / "var/lib/arguard").stat().st_mode & 0o777 == 0o700
    assert (root / "etc/systemd/system/arguard.service").is_file()
    assert (root / "etc/logrotate.d/arguard").is_file()
    assert (root / "opt/arguard/share/doc/arguard/formats.md").is_file()
    assert os.readlink(root / "usr/local/sbin/arguard") == "/opt/arguard/bin/arguard"
    version = subprocess.run([str(root / "opt/arguard/bin/arguard"), "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.startswith("arguard ")


def test_a_root_install_white_lists_the_ssh_session_and_writes_only_paths_below_root(
        installation):
    root, result = installation
    config_path = root / "etc/arguard/arguard.toml"
    lines = config_path.read_text().splitlines()
    config = load_config(config_path)
    assert ipaddress.ip_network(ADMIN) in config.global_.white_list
    [comment] = [n for n, line in enumerate(lines) if line.startswith(f"# {ADMIN}: ")]
    assert "(SSH_CONNECTION)" in lines[comment + 1]
    assert lines[comment + 2].startswith("white_list = ")
    for name in Paths.__dataclass_fields__:
        assert getattr(config.paths, name).is_relative_to(root), name
    for command in config.commands.values():
        for option in action_type(command.action).options:
            if option.type.path:
                value = command.options[option.name]
                assert Path(value).is_relative_to(root), (command.name, option.name, value)
    written = [value for line in lines if not line.lstrip().startswith("#")
               for value in re.findall(r'"(/[^"]*)"', line)]
    assert len(written) >= 9 and all(Path(v).is_relative_to(root) for v in written), written
    assert f"This SSH session's address {ADMIN} is on the white list." in result.stdout
    assert "What arguard will do:" in result.stdout and "   5763  level 10  " in result.stdout
    assert f"{root}/opt/arguard/bin/arguard run --dry-run -c {config_path}" in result.stdout


def test_without_an_ssh_session_the_white_list_is_the_shipped_one(installed: Path):
    generated = subprocess.run([str(installed / "opt/arguard/bin/python"), "-m",
                                "arguard.firstinstall"], capture_output=True, text=True,
                               env={k: v for k, v in os.environ.items()
                                    if k != "SSH_CONNECTION"})
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == (REPO / "conf/arguard.toml").read_text()


def test_the_manual_page_documents_every_command(installed: Path):
    path = installed / "usr/local/share/man/man1/arguard.1"
    page = path.read_text()
    assert page.startswith('.TH ARGUARD "1"')
    for name in build_parser()._subparsers._group_actions[0].choices:
        assert f"'arguard {name}'".replace("-", "\\-") in page, name
    assert ".SH FILES" in page and ".SH EXIT STATUS" in page
    if shutil.which("man") is not None:
        rendered = subprocess.run(["man", "-l", "-P", "cat", str(path)], capture_output=True,
                                  text=True, env={**os.environ, "MANWIDTH": "100"})
        assert rendered.returncode == 0, rendered.stderr
        assert "usage: arguard replay" in rendered.stdout


@pytest.mark.parametrize("line,expected", [
    ("arguard rep", {"replay"}),
    ("arguard import ", {"fail2ban", "wazuh"}),
    ("arguard block 203.0.113.5 --t", {"--timeout"}),
    ("arguard logtest --s", {"--summary"}),
])
def test_bash_completes_commands_and_options(installed: Path, line, expected):
    script = installed / "usr/local/share/bash-completion/completions/arguard"
    words = line.split(" ")
    probe = "\n".join([
        f"source {script}",
        "COMP_WORDS=(" + " ".join(f"'{word}'" for word in words) + ")",
        f"COMP_CWORD={len(words) - 1}", f"COMP_LINE='{line}'", f"COMP_POINT={len(line)}",
        "_shtab_arguard", 'printf "%s\\n" "${COMPREPLY[@]}"', ""])
    result = subprocess.run(["bash", "--norc", "--noprofile"], input=probe,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == expected, result.stdout + result.stderr
    zsh = installed / "usr/local/share/zsh/site-functions/_arguard"
    assert zsh.read_text().startswith("#compdef arguard")


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
        install(installed)
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
    install(root)
    config = root / "etc/arguard/arguard.toml"
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
    assert not (root / "usr/local/share/man/man1/arguard.1").exists()
    assert not (root / "usr/local/share/bash-completion/completions/arguard").exists()
    assert config.exists()
