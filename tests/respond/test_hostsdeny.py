"""hosts-deny on a hosts.deny copy in a temp dir: exact addresses, IPv6 brackets, other lines
kept byte for byte, atomic replacement with mode kept, concurrent writers."""

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
from arguard.respond.actions.base import ActionError
from arguard.respond.actions.hostsdeny import BEGIN, END, HostsDenyAction
from arguard.respond.owner import Owner

ADMIN_LINES = (b"# /etc/hosts.deny: list of hosts that are _not_ allowed to access the system.\n"
               b"#   see hosts_access(5)\n"
               b"# blocked by hand: 1.2.3.4 (old incident)\n"
               b"\n"
               b"sshd: 1.2.3.45\n"
               b"in.ftpd:\t198.51.100.7  \n"
               b"ALL: 1.2.3.4\n")


def action(path: Path, daemon: str = "ALL") -> HostsDenyAction:
    return HostsDenyAction(Command(name="host-deny", action="hosts-deny", expect="srcip",
                                   options={"path": str(path), "daemon": daemon}))


@pytest.fixture
def deny(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.deny"
    path.write_bytes(ADMIN_LINES)
    path.chmod(0o640)
    return path


def block_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    start = data.index(BEGIN) + len(BEGIN)
    return data[start:data.index(END)].splitlines()


def test_add_writes_entry_in_block_and_keeps_admin_lines(deny: Path):
    hd = action(deny)
    hd.add("203.0.113.5", 600, None)
    data = deny.read_bytes()
    assert data.startswith(ADMIN_LINES)
    assert block_lines(deny) == [b"ALL: 203.0.113.5"]
    assert data.endswith(END)
    assert hd.check("203.0.113.5")
    assert hd.list_targets() == {"203.0.113.5"}


def test_ipv6_in_brackets_and_normalised(deny: Path):
    hd = action(deny)
    hd.add("2001:DB8:0:0::1", None, None)
    assert block_lines(deny) == [b"ALL: [2001:db8::1]"]
    assert hd.check("2001:db8::1")
    assert hd.list_targets() == {"2001:db8::1"}
    hd.delete("2001:db8:0::1")
    assert deny.read_bytes() == ADMIN_LINES


def test_ipv4_mapped_address_is_written_as_ipv4(deny: Path):
    hd = action(deny)
    hd.add("::ffff:203.0.113.9", None, None)
    assert block_lines(deny) == [b"ALL: 203.0.113.9"]


def test_lifting_an_address_never_touches_a_longer_one(deny: Path):
    hd = action(deny)
    hd.add("1.2.3.45", None, None)
    hd.add("1.2.3.4", None, None)
    hd.add("11.2.3.4", None, None)
    hd.delete("1.2.3.4")
    assert block_lines(deny) == [b"ALL: 1.2.3.45", b"ALL: 11.2.3.4"]
    assert not hd.check("1.2.3.4")
    assert hd.check("1.2.3.45")
    # the administrator's own lines, comment and `ALL: 1.2.3.4` included, are untouched
    assert deny.read_bytes().startswith(ADMIN_LINES)


def test_hand_written_lines_are_not_arguards(deny: Path):
    hd = action(deny)
    assert hd.list_targets() == set()
    assert not hd.check("1.2.3.4")
    hd.delete("1.2.3.4")
    assert deny.read_bytes() == ADMIN_LINES


def test_add_and_delete_are_idempotent_and_last_delete_restores_file(deny: Path):
    hd = action(deny)
    hd.add("203.0.113.5", None, None)
    hd.add("203.0.113.5", None, None)
    assert block_lines(deny) == [b"ALL: 203.0.113.5"]
    hd.delete("203.0.113.5")
    hd.delete("203.0.113.5")
    assert deny.read_bytes() == ADMIN_LINES


def test_mode_and_owner_kept_and_no_temp_files_left(deny: Path):
    os.chown(deny, 0, 4)  # a group other than the writer's, as root:adm would be
    hd = action(deny)
    hd.add("203.0.113.5", None, None)
    info = deny.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (0, 4)
    assert sorted(p.name for p in deny.parent.iterdir()) == [".hosts.deny.lock", "hosts.deny"]


def test_missing_file_is_created(tmp_path: Path):
    path = tmp_path / "hosts.deny"
    action(path).add("192.0.2.1", None, None)
    assert path.read_bytes() == BEGIN + b"ALL: 192.0.2.1\n" + END
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_unterminated_last_line_gets_a_newline(tmp_path: Path):
    path = tmp_path / "hosts.deny"
    path.write_bytes(b"sshd: 198.51.100.1")
    action(path).add("192.0.2.1", None, None)
    assert path.read_bytes() == b"sshd: 198.51.100.1\n" + BEGIN + b"ALL: 192.0.2.1\n" + END


def test_text_after_the_block_is_kept(deny: Path):
    hd = action(deny)
    hd.add("192.0.2.1", None, None)
    with deny.open("ab") as handle:
        handle.write(b"# added later by the admin\nsshd: 10.9.9.9\n")
    hd.add("192.0.2.2", None, None)
    hd.delete("192.0.2.1")
    data = deny.read_bytes()
    assert block_lines(deny) == [b"ALL: 192.0.2.2"]
    assert data.endswith(END + b"# added later by the admin\nsshd: 10.9.9.9\n")


def test_commands_sharing_a_file_own_their_daemon_lines(deny: Path):
    everything, ssh = action(deny), action(deny, daemon="sshd")
    everything.add("192.0.2.1", None, None)
    ssh.add("192.0.2.1", None, None)
    ssh.add("192.0.2.2", None, None)
    assert block_lines(deny) == [b"ALL: 192.0.2.1", b"sshd: 192.0.2.1", b"sshd: 192.0.2.2"]
    assert everything.list_targets() == {"192.0.2.1"}
    assert ssh.list_targets() == {"192.0.2.1", "192.0.2.2"}
    ssh.delete("192.0.2.1")
    assert block_lines(deny) == [b"ALL: 192.0.2.1", b"sshd: 192.0.2.2"]


@pytest.mark.parametrize("target", ["", "example.com", "1.2.3.4/32", "0.0.0.0/0", "1.2.3",
                                    " 1.2.3.4", "1.2.3.4\nALL: ALL", "fe80::1%eth0",
                                    "[2001:db8::1]", "ALL"])
def test_refuses_anything_but_an_ip_literal(deny: Path, target: str):
    hd = action(deny)
    with pytest.raises(ActionError):
        hd.add(target, None, None)
    with pytest.raises(ActionError):
        hd.delete(target)
    assert deny.read_bytes() == ADMIN_LINES


@pytest.mark.parametrize("daemon", ["ALL: ALL", "sshd #", "", "a\nb"])
def test_refuses_bad_daemon_option(tmp_path: Path, daemon: str):
    with pytest.raises(ActionError):
        action(tmp_path / "hosts.deny", daemon=daemon)


def test_damaged_block_is_reported_not_rewritten(deny: Path):
    damaged = ADMIN_LINES + BEGIN + b"ALL: 192.0.2.1\n"
    deny.write_bytes(damaged)
    with pytest.raises(ActionError, match="damaged"):
        action(deny).add("192.0.2.2", None, None)
    assert deny.read_bytes() == damaged


def test_concurrent_threads_never_lose_a_line(deny: Path):
    targets = [f"10.{t}.0.{i}" for t in range(8) for i in range(1, 26)]

    def worker(t: int) -> None:
        hd = action(deny)  # one action per thread, as daemon and CLI each have their own
        for i in range(1, 26):
            hd.add(f"10.{t}.0.{i}", None, None)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert action(deny).list_targets() == set(targets)
    assert deny.read_bytes().startswith(ADMIN_LINES)


def test_concurrent_processes_never_lose_a_line(deny: Path):
    script = textwrap.dedent("""
        import sys
        from arguard.config import Command
        from arguard.respond.actions.hostsdeny import HostsDenyAction
        path, first, verb = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        hd = HostsDenyAction(Command(name="h", action="hosts-deny", expect="srcip",
                                     options={"path": path, "daemon": "ALL"}))
        for i in range(first, first + 20):
            getattr(hd, verb)(f"2001:db8::{i + 1:x}", *([None, None] if verb == "add" else []))
        """)
    hd = action(deny)
    for i in range(101, 121):
        hd.add(f"2001:db8::{i:x}", None, None)   # the deleting process's share
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    jobs = [[str(deny), str(first), "add"] for first in range(0, 100, 20)]
    jobs.append([str(deny), "100", "delete"])
    procs = [subprocess.Popen([sys.executable, "-c", script, *job], env=env) for job in jobs]
    assert [p.wait() for p in procs] == [0] * len(procs)
    assert hd.list_targets() == {f"2001:db8::{i:x}" for i in range(1, 101)}
    assert deny.read_bytes().startswith(ADMIN_LINES)


# --- owners: instances sharing one file ---------------------------------------------------

def owned(path: Path, tag: str, state_dir: Path | None = None) -> HostsDenyAction:
    return HostsDenyAction(Command(name="host-deny", action="hosts-deny", expect="srcip",
                                   options={"path": str(path)}), Owner(tag), state_dir)


def test_instances_sharing_the_file_keep_each_others_lines(deny: Path, tmp_path: Path):
    untagged, other = action(deny), owned(deny, "1a2b3c4d", tmp_path / "state")
    untagged.add("192.0.2.1", None, None)
    other.add("192.0.2.1", None, None)
    other.add("192.0.2.2", None, None)
    data = deny.read_bytes()
    assert data.startswith(ADMIN_LINES + BEGIN + b"ALL: 192.0.2.1\n" + END)
    assert data.endswith(b"# BEGIN arguard:1a2b3c4d -- entries between these lines are "
                         b"managed by arguard (state directory " + bytes(tmp_path) +
                         b"/state)\nALL: 192.0.2.1\nALL: 192.0.2.2\n# END arguard:1a2b3c4d\n")
    assert untagged.list_targets() == {"192.0.2.1"}
    assert other.list_targets() == {"192.0.2.1", "192.0.2.2"}
    untagged.delete("192.0.2.1")
    assert untagged.list_targets() == set() and other.check("192.0.2.1")
    other.delete("192.0.2.1")
    other.delete("192.0.2.2")
    assert deny.read_bytes() == ADMIN_LINES


def test_a_damaged_block_of_another_instance_is_not_ours_to_report(deny: Path):
    damaged = ADMIN_LINES + b"# BEGIN arguard:1a2b3c4d -- managed by arguard\nALL: 192.0.2.9\n"
    deny.write_bytes(damaged)
    hd = action(deny)
    hd.add("192.0.2.1", None, None)
    assert hd.list_targets() == {"192.0.2.1"}
    with pytest.raises(ActionError, match="arguard:1a2b3c4d' block is damaged"):
        owned(deny, "1a2b3c4d").list_targets()


def test_temp_files_of_interrupted_writes_are_removed_when_built(deny: Path):
    leftover = deny.parent / ".hosts.deny.k3x_9q2z"
    leftover.write_bytes(ADMIN_LINES + BEGIN)
    keep = [deny.parent / ".hosts.deny.bak", deny.parent / "hosts.deny.k3x_9q2z"]
    for path in keep:
        path.write_bytes(b"not ours\n")
    action(deny)
    assert not leftover.exists()
    assert all(path.exists() for path in keep)
    assert deny.read_bytes() == ADMIN_LINES
