"""The baseline on real files: what a scan and a realtime check report, and what they do with
bad input (unreadable files, paths that vanish or grow while read, names that are not
UTF-8, FIFOs, symlink loops)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.integrity.helpers import open_baseline, reported, root_of, scan, sha256, watching


@pytest.fixture
def tree(tmp_path):
    watched = tmp_path / "watched"
    (watched / "sub").mkdir(parents=True)
    (watched / "nginx.conf").write_bytes(b"server {}\n")
    (watched / "sub" / "a.conf").write_bytes(b"a\n")
    (watched / "sub" / "b.conf").write_bytes(b"b\n")
    return watched


def test_the_first_scan_records_the_baseline_silently_and_later_scans_report_changes(
        tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    assert scan(baseline, root) == []
    assert baseline.store.integrity_counts() == {os.fsencode(tree): 3}

    (tree / "nginx.conf").write_bytes(b"server { evil }\n")
    os.chmod(tree / "sub" / "a.conf", 0o600)
    (tree / "sub" / "b.conf").unlink()
    (tree / "new.conf").write_bytes(b"new\n")
    changes = {change.path: change for change in scan(baseline, root)}

    assert {path: change.event for path, change in changes.items()} == {
        f"{tree}/nginx.conf": "modified", f"{tree}/sub/a.conf": "modified",
        f"{tree}/sub/b.conf": "deleted", f"{tree}/new.conf": "added"}
    content = changes[f"{tree}/nginx.conf"]
    assert {"size", "sha256"} <= set(content.changed)
    assert (content.before.sha256, content.after.sha256) == (sha256(b"server {}\n"),
                                                             sha256(b"server { evil }\n"))
    chmod = changes[f"{tree}/sub/a.conf"]
    assert chmod.changed == ("permission",)
    assert (chmod.before.mode, chmod.after.mode) == (0o644, 0o600)
    assert all(change.found_by == "scheduled" for change in changes.values())
    assert scan(baseline, root) == []


def test_a_new_connection_reports_what_changed_meanwhile_once_and_nothing_else(tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree))
    scan(baseline, root_of(roots, tree))
    baseline.store.close()

    (tree / "sub" / "a.conf").write_bytes(b"changed while stopped\n")
    restarted, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    assert reported(scan(restarted, root)) == {("modified", f"{tree}/sub/a.conf")}
    assert scan(restarted, root) == []


def test_a_removed_directory_reports_each_of_its_files_deleted(tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    scan(baseline, root)
    shutil.rmtree(tree / "sub")
    assert reported(scan(baseline, root)) == {("deleted", f"{tree}/sub/a.conf"),
                                              ("deleted", f"{tree}/sub/b.conf")}


def test_realtime_checks_of_a_file_a_new_directory_and_a_removed_one(tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree))
    scan(baseline, root_of(roots, tree))

    (tree / "nginx.conf").write_bytes(b"changed\n")
    changes = baseline.check(os.fsencode(tree / "nginx.conf"))
    assert [(c.event, c.found_by) for c in changes] == [("modified", "realtime")]
    baseline.flush()
    assert baseline.check(os.fsencode(tree / "nginx.conf")) == []

    (tree / "new" / "deeper").mkdir(parents=True)
    (tree / "new" / "deeper" / "x").write_bytes(b"x")
    assert reported(baseline.check(os.fsencode(tree / "new"))) == {
        ("added", f"{tree}/new/deeper/x")}
    baseline.flush()

    shutil.rmtree(tree / "sub")
    assert reported(baseline.check(os.fsencode(tree / "sub"))) == {
        ("deleted", f"{tree}/sub/a.conf"), ("deleted", f"{tree}/sub/b.conf")}


def test_ignore_patterns_recursive_and_arguards_own_directories_are_not_watched(tmp_path):
    watched = tmp_path / "watched"
    for name in ("keep", ".git/config", "cache/x", "edit.swp", "private/key"):
        (watched / name).parent.mkdir(parents=True, exist_ok=True)
        (watched / name).write_bytes(b"1")
    flat = tmp_path / "flat"
    (flat / "deep").mkdir(parents=True)
    (flat / "top").write_bytes(b"1")
    (flat / "deep" / "below").write_bytes(b"1")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "arguard.db-wal").write_bytes(b"1")
    baseline, roots = open_baseline(
        tmp_path, watching(watched, ignore=(".git", "cache", "*.swp", f"{watched}/private/*")),
        watching(flat, recursive=False), watching(tmp_path / "state"))
    for root in roots:
        scan(baseline, root)
    assert baseline.store.integrity_counts() == {os.fsencode(watched): 1,
                                                 os.fsencode(flat): 1}
    for name in (".git/config", "cache/x", "edit.swp", "private/key"):
        (watched / name).write_bytes(b"2")
    (flat / "deep" / "below").write_bytes(b"2")
    assert [c for root in roots for c in scan(baseline, root)] == []
    assert baseline.check(os.fsencode(watched / "cache" / "x")) == []


def test_a_watched_path_inside_another_belongs_to_the_inner_one(tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree), watching(tree / "sub"))
    for root in roots:
        scan(baseline, root)
    assert baseline.store.integrity_counts() == {os.fsencode(tree): 1,
                                                 os.fsencode(tree / "sub"): 2}
    (tree / "sub" / "a.conf").write_bytes(b"x")
    assert reported(scan(baseline, root_of(roots, tree))) == set()
    assert reported(scan(baseline, root_of(roots, tree / "sub"))) == {
        ("modified", f"{tree}/sub/a.conf")}


def test_a_symlink_is_watched_as_a_link_unless_followed_and_loops_end(tmp_path, tree):
    outside = tmp_path / "outside"
    outside.write_bytes(b"outside\n")
    (tree / "link").symlink_to(outside)
    (tree / "sub" / "loop").symlink_to(tree)
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    scan(baseline, root)
    outside.write_bytes(b"outside, changed\n")
    assert scan(baseline, root) == []  # the target is not read
    (tree / "link").unlink()
    (tree / "link").symlink_to(tmp_path / "elsewhere")
    assert [(c.event, c.path, c.after.kind) for c in scan(baseline, root)] == [
        ("modified", f"{tree}/link", "symlink")]

    second = tmp_path / "second"
    second.mkdir()
    followed, roots = open_baseline(second, watching(tree, follow_symlinks=True))
    root = root_of(roots, tree)
    assert scan(followed, root) == []
    # nginx.conf, sub/a.conf, sub/b.conf and the dangling link; sub/loop leads back up
    assert followed.store.integrity_counts()[os.fsencode(tree)] == 4
    (tmp_path / "elsewhere").write_bytes(b"now there\n")
    assert [(c.event, c.path, c.after.kind) for c in scan(followed, root)] == [
        ("modified", f"{tree}/link", "file")]


def test_a_name_that_is_not_utf8_is_reported_with_its_bytes_escaped(tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    scan(baseline, root)
    with open(os.fsencode(tree) + b"/bad\xff.conf", "wb") as handle:
        handle.write(b"x")
    changes = scan(baseline, root)
    assert reported(changes) == {("added", f"{tree}/bad\\xff.conf")}
    assert scan(baseline, root) == []
    assert baseline.faults.not_utf8 == 1
    os.unlink(os.fsencode(tree) + b"/bad\xff.conf")
    assert reported(scan(baseline, root)) == {("deleted", f"{tree}/bad\\xff.conf")}


def test_a_fifo_is_skipped_without_waiting_on_it(tmp_path, tree):
    os.mkfifo(tree / "pipe")
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    scan(baseline, root)
    assert baseline.store.integrity_counts()[os.fsencode(tree)] == 3
    os.unlink(tree / "nginx.conf")
    os.mkfifo(tree / "nginx.conf")  # a file swapped for a FIFO: gone as a file
    assert reported(scan(baseline, root)) == {("deleted", f"{tree}/nginx.conf")}


def test_paths_that_disappear_in_the_middle_of_a_scan(tmp_path, tree):
    """The scan asks `interrupted()` before each entry: the test removes a file and a
    directory the scan has listed but not read yet."""
    for name in ("c1", "c2", "c3"):
        (tree / name).write_bytes(b"1")
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    scan(baseline, root)

    asked = []

    def remove_behind_the_scan() -> bool:
        asked.append(1)
        if len(asked) == 1:
            (tree / "c3").unlink()
            shutil.rmtree(tree / "sub")
        return False

    baseline.interrupted = remove_behind_the_scan
    assert reported(scan(baseline, root)) == {
        ("deleted", f"{tree}/c3"), ("deleted", f"{tree}/sub/a.conf"),
        ("deleted", f"{tree}/sub/b.conf")}
    assert len(asked) >= 5


def test_a_file_growing_while_it_is_hashed_is_read_in_bounded_time(tmp_path, tree):
    growing = tree / "growing.log"
    growing.write_bytes(b"\0" * (32 << 20))
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import os
        fd = os.open({str(growing)!r}, os.O_WRONLY | os.O_APPEND)
        print("writing", flush=True)
        while True:
            os.write(fd, b"x" * 4096)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        scan(baseline, root)
    finally:
        writer.kill()
        writer.wait()
    assert baseline.faults.unstable == 1
    recorded = baseline.store.integrity_entry(os.fsencode(tree), b"growing.log")[1]
    assert (32 << 20) <= recorded.size <= growing.stat().st_size


UNREADABLE_SCAN = """
import json, os, sys
from arguard.config import Integrity
from arguard.integrity.baseline import Baseline, Roots
from arguard.store import Store
watched, database = sys.argv[1], sys.argv[2]
roots = Roots([Integrity(paths=(watched,))])
baseline = Baseline(Store(database), roots, None)
changes = [c for batch in baseline.scan(next(iter(roots))) for c in batch]
print(json.dumps({"changes": [[c.event, c.path, list(c.changed)] for c in changes],
                  "faults": baseline.faults.as_dict()}))
"""


def test_an_unreadable_file_is_reported_by_its_attributes_and_read_again_later(tmp_path, tree):
    """As root, the scan runs in a child without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH
    (setpriv), so that a mode-000 file really cannot be read."""
    baseline, roots = open_baseline(tmp_path, watching(tree))
    root = root_of(roots, tree)
    scan(baseline, root)
    baseline.store.close()
    secret = tree / "sub" / "a.conf"
    secret.write_bytes(b"changed and hidden\n")
    os.chmod(secret, 0)
    unprivileged = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
                    if os.geteuid() == 0 else [])
    result = subprocess.run(
        [*unprivileged, sys.executable, "-c", UNREADABLE_SCAN, str(tree),
         str(tmp_path / "arguard.db")], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    [(event, path, changed)] = seen["changes"]
    assert (event, path) == ("modified", str(secret))
    assert {"size", "permission"} <= set(changed) and "sha256" not in changed
    assert seen["faults"]["unreadable"] == 1
    assert "Permission denied" in seen["faults"]["last_error"]

    os.chmod(secret, 0o644)
    again, roots = open_baseline(tmp_path, watching(tree))
    changes = scan(again, root_of(roots, tree))
    assert [(c.path, c.changed) for c in changes] == [(str(secret), ("permission", "sha256"))]
    assert changes[0].after.sha256 == sha256(b"changed and hidden\n")


def test_accept_makes_the_current_state_the_baseline_and_keeps_known_good_copies(
        tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree, keep_copies=1 << 20))
    root = root_of(roots, tree)
    scan(baseline, root)
    store = baseline.store
    good = store.known_good(os.fsencode(tree / "nginx.conf"))
    assert (good.sha256, good.mode) == (sha256(b"server {}\n"), 0o644)
    assert sorted(os.listdir(tmp_path / "copies")) == sorted(
        {sha256(b"server {}\n"), sha256(b"a\n"), sha256(b"b\n")})
    assert stat.S_IMODE(os.stat(tmp_path / "copies").st_mode) == 0o700

    (tree / "nginx.conf").write_bytes(b"server { new }\n")
    (tree / "added.conf").write_bytes(b"added\n")
    assert reported(scan(baseline, root)) == {("modified", f"{tree}/nginx.conf"),
                                              ("added", f"{tree}/added.conf")}
    assert store.known_good(os.fsencode(tree / "added.conf")) is None  # added: not trusted
    assert store.known_good(os.fsencode(tree / "nginx.conf")).sha256 == sha256(b"server {}\n")
    accepted = baseline.accept(os.fsencode(tree))
    assert (accepted.files, accepted.copies) == (4, 4)
    assert scan(baseline, root) == []
    assert store.known_good(os.fsencode(tree / "nginx.conf")).sha256 == \
        sha256(b"server { new }\n")
    assert sha256(b"server {}\n") not in os.listdir(tmp_path / "copies")  # pruned


def test_a_file_back_in_its_known_good_state_is_recorded_without_a_report(tmp_path, tree):
    baseline, roots = open_baseline(tmp_path, watching(tree, keep_copies=1 << 20))
    root = root_of(roots, tree)
    scan(baseline, root)
    (tree / "nginx.conf").write_bytes(b"tampered\n")
    assert reported(scan(baseline, root)) == {("modified", f"{tree}/nginx.conf")}
    (tree / "nginx.conf").write_bytes(b"server {}\n")
    assert scan(baseline, root) == []
    (tree / "sub" / "a.conf").unlink()
    assert reported(scan(baseline, root)) == {("deleted", f"{tree}/sub/a.conf")}
    (tree / "sub" / "a.conf").write_bytes(b"a\n")
    assert scan(baseline, root) == []
