"""disable-account on a passwd + shadow pair in a temp dir: lock/unlock as `passwd -l/-u`,
refusals, other lines and the file's mode kept, the shadow lock honoured."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from arguard.config import Command
from arguard.respond.actions.account import AccountAction, AccountAlreadyLocked
from arguard.respond.actions.base import ActionError

PASSWD = textwrap.dedent("""\
    root:x:0:0:root:/root:/bin/bash
    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
    sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
    toor:x:0:0:second root:/root:/bin/sh
    alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
    bob:x:1001:1001:Bob,,,:/home/bob:/bin/bash
    carol:x:1002:1002:Carol (locked by the admin):/home/carol:/bin/bash
    dave:x:1003:1003::/home/dave:/bin/bash
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
    """).encode()

ALICE_HASH = b"$y$j9T$Ju3u1dy3Q6zQnSvxWnYNn/$5q3PqnG2t9cRU2Zw8YbYpQvHq3oT0f1mO3bXjQ9S6B."
SHADOW = (b"root:$y$j9T$rootsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEF:19700:0:99999:7:::\n"
          b"daemon:*:19700:0:99999:7:::\n"
          b"sshd:!:19700::::::\n"
          b"toor:$6$salt$hash:19700:0:99999:7:::\n"
          b"alice:" + ALICE_HASH + b":19800:0:99999:7:::\n"
          b"bob:$6$rounds=5000$abc$defghijk:19801:0:99999:7:::\n"
          b"carol:!$6$xyz$lockedbyadmin:19802:0:99999:7:::\n"
          b"nobody:*:19700:0:99999:7:::\n")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    passwd, shadow = tmp_path / "passwd", tmp_path / "shadow"
    passwd.write_bytes(PASSWD)
    shadow.write_bytes(SHADOW)
    shadow.chmod(0o640)
    os.chown(shadow, 0, 42)  # root:shadow on Debian
    return passwd, shadow


def action(files: tuple[Path, Path], min_uid: int = 1000, **kwargs) -> AccountAction:
    passwd, shadow = files
    return AccountAction(Command(name="disable-account", action="disable-account",
                                 expect="dstuser",
                                 options={"shadow": str(shadow), "passwd": str(passwd),
                                          "min_uid": min_uid}), **kwargs)


def shadow_line(shadow: Path, name: str) -> bytes:
    return next(line for line in shadow.read_bytes().splitlines()
                if line.startswith(name.encode() + b":"))


def test_lock_prefixes_hash_with_one_bang_and_unlock_restores_it(files):
    _, shadow = files
    account = action(files)
    account.add("alice", 600, None)
    assert shadow_line(shadow, "alice") == b"alice:!" + ALICE_HASH + b":19800:0:99999:7:::"
    assert account.check("alice")
    account.delete("alice")
    assert shadow.read_bytes() == SHADOW
    assert not account.check("alice")


def test_other_lines_mode_and_owner_are_kept(files):
    _, shadow = files
    action(files).add("bob", None, None)
    before, after = SHADOW.splitlines(), shadow.read_bytes().splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(before) == len(after) and changed == [5]
    assert shadow.read_bytes().endswith(b"\n")
    info = shadow.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (0, 42)
    assert sorted(p.name for p in shadow.parent.iterdir()) == [".pwd.lock", "passwd", "shadow"]


def test_unlock_of_unlocked_account_is_harmless(files):
    _, shadow = files
    action(files).delete("bob")
    assert shadow.read_bytes() == SHADOW


def test_already_locked_account_is_not_adopted(files):
    """carol was locked by the admin: arguard must not take the lock over (else a later
    delete would unlock her)."""
    _, shadow = files
    account = action(files)
    with pytest.raises(AccountAlreadyLocked):
        account.add("carol", 600, None)
    assert shadow.read_bytes() == SHADOW
    assert account.check("carol")
    assert account.list_targets() is None


def test_add_twice_does_not_stack_bangs(files):
    _, shadow = files
    account = action(files)
    account.add("alice", None, None)
    with pytest.raises(AccountAlreadyLocked):
        account.add("alice", None, None)
    assert shadow_line(shadow, "alice").startswith(b"alice:!$y$")
    account.delete("alice")
    assert shadow.read_bytes() == SHADOW


@pytest.mark.parametrize("name, reason", [
    ("root", "root"),
    ("toor", "UID 0"),
    ("sshd", "below min_uid"),
    ("daemon", "below min_uid"),
    ("mallory", "unknown account"),
    ("dave", "no entry"),          # in passwd, missing from shadow
])
def test_refusals(files, name, reason):
    _, shadow = files
    with pytest.raises(ActionError, match=reason):
        action(files).add(name, 600, None)
    assert shadow.read_bytes() == SHADOW


def test_min_uid_is_configurable(files):
    _, shadow = files
    with pytest.raises(ActionError, match="below min_uid"):
        action(files, min_uid=1001).add("alice", None, None)
    with pytest.raises(AccountAlreadyLocked):  # UID 100 passes; its "!" is not adopted
        action(files, min_uid=100).add("sshd", None, None)
    assert shadow.read_bytes() == SHADOW


@pytest.mark.parametrize("name", ["", "../alice", "al/ice", "alice:x", "ali ce", "alice\n",
                                  "al\x00ice", "\talice", "-alice", "..", ".",
                                  "a" * 33, "alice\x1b[0m"])
def test_invalid_names_refused_for_every_operation(files, name):
    _, shadow = files
    account = action(files)
    for call in (lambda: account.add(name, None, None), lambda: account.delete(name),
                 lambda: account.check(name)):
        with pytest.raises(ActionError, match="not a valid account name"):
            call()
    assert shadow.read_bytes() == SHADOW


def test_name_prefix_never_matches_another_account(files):
    """`al` must not find `alice:`, `alice` must not find `alice2:`."""
    passwd, shadow = files
    passwd.write_bytes(PASSWD + b"alice2:x:1004:1004::/home/alice2:/bin/sh\n")
    with pytest.raises(ActionError, match="unknown account"):
        action(files).add("al", None, None)
    shadow.write_bytes(SHADOW.replace(b"alice:", b"alice2:"))
    with pytest.raises(ActionError, match="no entry"):
        action(files).add("alice", None, None)


def test_waits_for_the_shadow_lock_held_by_another_process(files):
    """Another process (vipw, useradd …) holds `<dir>/.pwd.lock` the way lckpwdf does;
    arguard gives up after its lock timeout instead of writing."""
    _, shadow = files
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import fcntl, os, sys
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.read()
            """), str(shadow.parent / ".pwd.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ActionError, match="timed out waiting for the lock"):
            action(files, lock_timeout=0.2).add("alice", None, None)
        assert shadow.read_bytes() == SHADOW
    finally:
        holder.stdin.close()
        holder.wait()
    action(files).add("alice", None, None)
    assert action(files).check("alice")


def test_our_lock_is_the_one_lckpwdf_protocol_uses(files):
    """While arguard writes, the POSIX lock on `<dir>/.pwd.lock` is held: a non-blocking
    attempt from another process fails."""
    _, shadow = files
    account = action(files)
    seen = []
    real_write = account._write

    def write_and_probe(*args):
        probe = subprocess.run(
            [sys.executable, "-c", textwrap.dedent("""
                import fcntl, os, sys
                fd = os.open(sys.argv[1], os.O_WRONLY)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    sys.exit(3)
                """), str(shadow.parent / ".pwd.lock")])
        seen.append(probe.returncode)
        real_write(*args)

    account._write = write_and_probe
    account.add("alice", None, None)
    assert seen == [3]


def test_concurrent_threads_lock_different_accounts(files):
    passwd, shadow = files
    names = [f"user{i}" for i in range(40)]
    passwd.write_bytes(PASSWD + b"".join(
        f"{n}:x:{2000 + i}:{2000 + i}::/home/{n}:/bin/sh\n".encode() for i, n in enumerate(names)))
    shadow.write_bytes(SHADOW + b"".join(f"{n}:$6$s$h{i}:19900:0:99999:7:::\n".encode()
                                         for i, n in enumerate(names)))
    threads = [threading.Thread(target=action(files).add, args=(n, None, None)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    account = action(files)
    assert all(account.check(n) for n in names)
    assert not account.check("alice")
