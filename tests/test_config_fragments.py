"""conf.d/*.toml beside arguard.toml: merged in name order, lists joined, tables appended,
a key or command set twice an error naming both files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from arguard.config import load_config
from tests.conftest import write_config


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", "check-config", "-c",
                           str(config)], capture_output=True, text=True, timeout=60)


def fragment(config: Path, name: str, text: str) -> Path:
    path = config.parent / "conf.d" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


MAIN = """
    [global]
    white_list = ["127.0.0.0/8"]
    max_blocks = 50

    [[source]]
    path = "auth.log"

    [[command]]
    name = "firewall-drop"
    action = "ipset"
    timeout_allowed = true
    """


def test_fragments_add_sources_commands_responses_and_white_list(tmp_path: Path):
    config = write_config(tmp_path, shipped=False, extra=MAIN)
    fragment(config, "60-b.toml", """
        [global]
        white_list = ["192.0.2.7", "127.0.0.0/8"]

        [[source]]
        path = "auth.log"

        [[source]]
        path = "web.log"

        [[active_response]]
        command = "f2b-web"
        rules_id = [100003]
        timeout = 60
        """)
    fragment(config, "50-a.toml", """
        [[command]]
        name = "f2b-web"
        action = "ipset"
        timeout_allowed = true
        """)
    fragment(config, "README", "not a fragment")
    (tmp_path / "rules.d" / "web.toml").write_text('[[rule]]\nid = 100003\nlevel = 5\n'
                                                   'match = "scan"\n')
    loaded = load_config(config)
    assert [str(n) for n in loaded.global_.white_list] == ["127.0.0.0/8", "192.0.2.7/32"]
    assert [s.path for s in loaded.sources] == [str(tmp_path / "auth.log"),
                                                str(tmp_path / "web.log")], \
        "the same log is followed once; relative paths are the main file's"
    assert list(loaded.commands) == ["firewall-drop", "f2b-web"]
    assert loaded.active_responses[0].command == "f2b-web"
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert "conf.d/50-a.toml, " in result.stdout and "conf.d/60-b.toml" in result.stdout


def test_a_key_set_in_two_files_names_both(tmp_path: Path):
    config = write_config(tmp_path, shipped=False, extra=MAIN)
    path = fragment(config, "60-x.toml", """
        [global]
        max_blocks = 70
        """)
    result = check(config)
    assert result.returncode == 1
    assert f"{path}:3: global.max_blocks is already set in {config}:" in result.stderr


def test_a_command_defined_in_two_files_names_both(tmp_path: Path):
    config = write_config(tmp_path, shipped=False, extra=MAIN)
    path = fragment(config, "60-x.toml", """
        [[command]]
        name = "firewall-drop"
        action = "route"
        """)
    result = check(config)
    assert result.returncode == 1
    assert f"{path}:3: command 'firewall-drop' is already defined in {config}:" \
        in result.stderr


def test_a_problem_in_a_fragment_is_reported_at_its_line(tmp_path: Path):
    config = write_config(tmp_path, shipped=False, extra=MAIN)
    path = fragment(config, "60-x.toml", """
        [[active_response]]
        command = "firewall-drop"
        rules_id = [1]
        colour = "red"
        """)
    fragment(config, "70-y.toml", "[[source]\n")
    result = check(config)
    assert result.returncode == 1
    assert f"{path.parent / '70-y.toml'}:1: TOML syntax error" in result.stderr
    path.parent.joinpath("70-y.toml").unlink()
    result = check(config)
    assert f"{path}:5: unknown key 'colour' in [active_response]" in result.stderr
