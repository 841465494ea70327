"""The restore-file action on real files: the known-good content, mode, owner and mtime come
back atomically; a symlink in the file's place is replaced and its target left alone; nothing
is written through a symlinked directory or outside the watched tree."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from types import MappingProxyType

import pytest

from arguard.config import Command, Integrity, Paths, load_config
from arguard.errors import ConfigError
from arguard.integrity.baseline import Baseline, Roots
from arguard.integrity.copies import Copies
from arguard.respond.actions import ActionContext, ActionError
from arguard.respond.actions.restorefile import RestoreFile
from arguard.respond.owner import UNTAGGED
from arguard.store import Store
from arguard.syscheck import change_event
from arguard.model import Alert, FileChange, RuleInfo
from tests.conftest import write_config

GOOD = b"server { listen 80; }\n"


@pytest.fixture
def site(tmp_path):
    """A watched tree with a known-good baseline (keep_copies), and a directory outside it."""
    watched = tmp_path / "watched"
    (watched / "conf.d").mkdir(parents=True)
    (watched / "nginx.conf").write_bytes(GOOD)
    os.chown(watched / "nginx.conf", 1234, 1235)
    os.chmod(watched / "nginx.conf", 0o640)
    os.utime(watched / "nginx.conf", ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    (watched / "conf.d" / "site.conf").write_bytes(b"site\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"outside secret\n")
    paths = Paths(state_dir=tmp_path / "state", ar_bin_dir=tmp_path / "bin")
    paths.state_dir.mkdir()
    roots = Roots([Integrity(paths=(str(watched),), keep_copies=1 << 20)])
    store = Store(paths.database)
    baseline = Baseline(store, roots, Copies(paths.integrity_copies))
    for _ in baseline.scan(next(iter(roots))):
        pass
    store.close()
    return watched, paths


def restorer(paths: Paths, **options) -> RestoreFile:
    command = Command(name="restore", action="restore-file", expect="filename",
                      options=MappingProxyType(options))
    return RestoreFile(command, ActionContext(paths, UNTAGGED))


def test_content_mode_owner_and_mtime_come_back_atomically(site):
    watched, paths = site
    target = watched / "nginx.conf"
    target.write_bytes(b"server { evil }\n")
    os.chown(target, 0, 0)
    os.chmod(target, 0o777)
    tampered_inode = target.stat().st_ino
    restorer(paths).add(str(target), None, None)
    info = target.stat()
    assert target.read_bytes() == GOOD
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 1234, 1235)
    assert info.st_mtime_ns == 1_600_000_000 * 10**9
    assert info.st_ino != tampered_inode  # a new file renamed into place, not rewritten
    assert sorted(os.listdir(watched)) == ["conf.d", "nginx.conf"]  # no temp file left
    assert restorer(paths).check(str(target)) is True


def test_a_symlink_in_the_files_place_is_replaced_and_its_target_untouched(site, tmp_path):
    watched, paths = site
    target = watched / "conf.d" / "site.conf"
    outside = tmp_path / "outside" / "secret"
    target.unlink()
    target.symlink_to(outside)
    restorer(paths).add(str(target), None, None)
    assert not target.is_symlink() and target.is_file()
    assert target.read_bytes() == b"site\n"
    assert outside.read_bytes() == b"outside secret\n"


def test_nothing_is_written_through_a_symlinked_directory(site, tmp_path):
    watched, paths = site
    (watched / "conf.d" / "site.conf").unlink()
    (watched / "conf.d").rmdir()
    (watched / "conf.d").symlink_to(tmp_path / "outside")
    with pytest.raises(ActionError, match="is a symlink now; restore-file never writes "
                                          "through one"):
        restorer(paths).add(str(watched / "conf.d" / "site.conf"), None, None)
    assert sorted(os.listdir(tmp_path / "outside")) == ["secret"]


def test_a_directory_in_the_files_place_is_not_replaced(site):
    watched, paths = site
    target = watched / "nginx.conf"
    target.unlink()
    target.mkdir()
    (target / "inside").write_bytes(b"x")
    with pytest.raises(ActionError, match="is a directory now"):
        restorer(paths).add(str(target), None, None)
    assert (target / "inside").read_bytes() == b"x"


def test_a_deleted_file_is_recreated(site):
    watched, paths = site
    (watched / "nginx.conf").unlink()
    restorer(paths).add(str(watched / "nginx.conf"), None, None)
    assert (watched / "nginx.conf").read_bytes() == GOOD


THEN = """#!{python}
import json, sys
message = json.loads(sys.stdin.readline())
with open({out!r}, "a") as out:
    out.write(json.dumps({{"argv": sys.argv[1:], "command": message["command"],
                          "path": message["parameters"]["alert"]["syscheck"]["path"]}}) + "\\n")
"""


def fim_alert(path: str) -> Alert:
    change = FileChange(path, "modified", "realtime", None, None, (), 1_700_000_000.0)
    event = change_event(change, frozenset())
    rule = RuleInfo(550, 7, "Integrity checksum changed.", ("ossec", "syscheck"), ())
    return Alert("1700000000.1", rule, event, 1)


def test_the_then_script_runs_after_a_restore_and_not_when_nothing_was_restored(site,
                                                                                tmp_path):
    watched, paths = site
    paths.ar_bin_dir.mkdir(mode=0o755)
    out = tmp_path / "then.jsonl"
    script = paths.ar_bin_dir / "reload-nginx"
    script.write_text(THEN.format(python=sys.executable, out=str(out)))
    script.chmod(0o750)
    action = restorer(paths, then="reload-nginx", then_args=["--check"])
    target = str(watched / "nginx.conf")

    action.add(target, None, fim_alert(target))
    assert not out.exists()  # already in its known-good state: nothing written, nothing run
    (watched / "nginx.conf").write_bytes(b"tampered\n")
    action.add(target, None, fim_alert(target))
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"argv": ["--check"], "command": "add", "path": target}]


def test_a_changed_copy_is_refused_and_the_file_left_as_it_is(site):
    watched, paths = site
    (watched / "nginx.conf").write_bytes(b"tampered\n")
    for copy in paths.integrity_copies.iterdir():
        copy.write_bytes(b"not what it was\n")
    with pytest.raises(ActionError, match="was changed; not used"):
        restorer(paths).add(str(watched / "nginx.conf"), None, None)
    assert (watched / "nginx.conf").read_bytes() == b"tampered\n"


@pytest.mark.parametrize("target, message", [
    ("relative/path", "not an absolute path"),
    ("/etc/../etc/passwd", "not a path in its normal form"),
    ("/nowhere/watched", "no known-good copy"),
])
def test_targets_without_a_known_good_copy_are_refused(site, target, message):
    _, paths = site
    with pytest.raises(ActionError, match=message):
        restorer(paths).add(target, None, None)


def test_a_file_added_after_the_baseline_has_no_known_good_copy(site):
    watched, paths = site
    (watched / "added.conf").write_bytes(b"added\n")
    with pytest.raises(ActionError, match="no known-good copy"):
        restorer(paths).add(str(watched / "added.conf"), None, None)
    assert (watched / "added.conf").read_bytes() == b"added\n"


@pytest.mark.parametrize("extra, message", [
    ('expect = "srcip"', "expect 'srcip' gives targets of kind ip, but action 'restore-file' "
                         "acts on targets of kind file"),
    ("timeout_allowed = true", 'a command that acts on files (expect = "filename") runs once '
                               "per alert: timeout_allowed is not supported"),
    ('then = "../bin/sh"', "then '../bin/sh' must be a bare file name inside "
                           "paths.ar_bin_dir (no '/')"),
])
def test_restore_file_commands_are_checked_with_file_and_line(tmp_path, extra, message):
    path = write_config(tmp_path, extra=textwrap.dedent("""
        [[command]]
        name = "restore"
        action = "restore-file"
        """) + extra + "\n")
    line = path.read_text().splitlines().index(extra) + 1
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [str(p) for p in raised.value.problems] == [f"{path}:{line}: {message}"]


def test_a_restore_file_command_expects_a_filename_by_default(tmp_path):
    path = write_config(tmp_path, extra="""
        [[command]]
        name = "restore"
        action = "restore-file"
        """)
    assert load_config(path).commands["restore"].expect == "filename"
