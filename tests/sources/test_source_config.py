"""[[source]] configuration: journal options, and a missing journalctl reported by
check-config with file and line instead of a crash at run time."""

from __future__ import annotations

import os

import pytest

from arguard.config import load_config
from tests.conftest import write_config
from tests.test_check_config import check

JOURNAL = """
[[source]]
journal = { matches = ["_COMM=sshd"], directory = "journal" }
"""


def test_journal_directory_is_relative_to_the_config_file(tmp_path):
    config = load_config(write_config(tmp_path, extra=JOURNAL))
    source = config.sources[0]
    assert source.journal_directory == str(tmp_path / "journal")
    assert source.journal_matches == ("_COMM=sshd",)
    assert source.name == f"journal:_COMM=sshd @{tmp_path / 'journal'}"


@pytest.mark.parametrize("extra,expected", [
    ("""
     [[source]]
     journal = { matches = ["_COMM=sshd"], dir = "x" }
     """, "arguard.toml:13: unknown key 'dir' in [source.journal]"),
    ("""
     [[source]]
     journal = { matches = ["_COMM=sshd"], directory = 5 }
     """, "arguard.toml:13: source.journal.directory must be a path"),
    ("""
     [[source]]
     path = "/var/log/auth.log"
     max_line_bytes = 10
     """, "arguard.toml:14: max_line_bytes must be at least 256"),
])
def test_source_problems_are_reported_with_line(tmp_path, extra, expected):
    result = check(write_config(tmp_path, extra=extra))
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr


def test_missing_journalctl_is_a_configuration_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = check(write_config(tmp_path, extra=JOURNAL))
    assert result.returncode == 1
    assert ("arguard.toml:13: a journal source needs journalctl, which is not installed "
            "(not found in PATH)") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    monkeypatch.setenv("PATH", os.defpath)
    assert check(write_config(tmp_path, extra=JOURNAL)).returncode == 0
