"""The file integrity source on real files with real inotify: realtime events, an editor's
save as one change, changes made while stopped, the max_eps bound and the pending bound."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from arguard.config import Integrity
from arguard.model import Event
from arguard.sources.integrity import Pending, IntegritySource

# Only reached when what is waited for does not happen at all.
DEADLINE = 30.0


def run_source(entries: tuple[Integrity, ...], database: Path, scenario,
               pending_limit: int | None = None) -> list[list[Event]]:
    """Run a source around `scenario(source, batches)`; every batch it delivered."""
    batches: list[list[Event]] = []

    async def main() -> None:
        source = IntegritySource(entries, database, None, batches.append)
        if pending_limit is not None:
            source.pending = Pending(pending_limit)
        task = asyncio.create_task(source.run())
        placed = asyncio.create_task(source.placed.wait())
        await asyncio.wait([task, placed], timeout=DEADLINE,
                           return_when=asyncio.FIRST_COMPLETED)
        assert source.placed.is_set(), task.result() if task.done() else "not placed"
        try:
            await scenario(source, batches)
        finally:
            await source.stop()
            await task

    asyncio.run(main())
    return batches


async def until(predicate, what: str):
    end = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def events_of(batches: list[list[Event]]) -> list[Event]:
    return [event for batch in batches for event in batch]


def about(batches, path: Path) -> list[Event]:
    return [e for e in events_of(batches) if e.fields["file"] == str(path)]


@pytest.fixture
def watched(tmp_path):
    directory = tmp_path / "watched"
    (directory / "conf.d").mkdir(parents=True)
    (directory / "nginx.conf").write_bytes(b"server {}\n")
    (directory / "conf.d" / "site.conf").write_bytes(b"site\n")
    return directory


def test_realtime_changes_are_reported_as_syscheck_events(tmp_path, watched):
    async def scenario(source, batches):
        (watched / "nginx.conf").write_bytes(b"server { changed }\n")
        (watched / "conf.d" / "new.conf").write_bytes(b"new\n")
        os.chmod(watched / "conf.d" / "site.conf", 0o600)
        await until(lambda: len(events_of(batches)) >= 3, "three events")
        (watched / "nginx.conf").unlink()
        await until(lambda: len(events_of(batches)) >= 4, "the deletion")

    batches = run_source((Integrity(paths=(str(watched),)),), tmp_path / "db", scenario)
    seen = {(e.fields["file"], e.decoder) for e in events_of(batches)}
    assert seen == {(str(watched / "nginx.conf"), "syscheck_integrity_changed"),
                    (str(watched / "conf.d" / "new.conf"), "syscheck_new_entry"),
                    (str(watched / "conf.d" / "site.conf"), "syscheck_integrity_changed"),
                    (str(watched / "nginx.conf"), "syscheck_deleted")}
    assert all(e.fields["mode"] == "realtime" for e in events_of(batches))
    chmod = about(batches, watched / "conf.d" / "site.conf")[0]
    assert (chmod.fields["perm_before"], chmod.fields["perm"],
            chmod.fields["changed_fields"]) == ("rw-r--r--", "rw-------", "permission")


def test_an_editors_write_rename_and_chmod_is_one_change(tmp_path, watched):
    target = watched / "nginx.conf"

    async def scenario(source, batches):
        temp = watched / ".nginx.conf.swp"
        temp.write_bytes(b"server { edited }\n")
        os.rename(temp, target)
        os.chmod(target, 0o640)
        await until(lambda: about(batches, target), "the edit")
        sentinel = watched / "sentinel"
        sentinel.write_bytes(b"later\n")
        await until(lambda: about(batches, sentinel), "the later change")

    batches = run_source((Integrity(paths=(str(watched),)),), tmp_path / "db", scenario)
    [edit] = about(batches, target)
    assert set(edit.fields["changed_fields"].split(",")) >= {"size", "permission", "inode",
                                                             "sha256"}
    assert about(batches, watched / ".nginx.conf.swp") == []


def test_a_change_made_while_stopped_is_reported_once_at_the_next_start(tmp_path, watched):
    entries = (Integrity(paths=(str(watched),)),)

    async def nothing(source, batches):
        pass

    async def until_scanned(source, batches):
        await until(lambda: source.status_of[os.fsencode(watched)].last_scan_finished
                    and not source.status_of[os.fsencode(watched)].scanning, "the scan")

    assert events_of(run_source(entries, tmp_path / "db", nothing)) == []
    (watched / "conf.d" / "site.conf").write_bytes(b"changed while stopped\n")
    batches = run_source(entries, tmp_path / "db", until_scanned)
    assert [(e.fields["file"], e.fields["mode"]) for e in events_of(batches)] == [
        (str(watched / "conf.d" / "site.conf"), "scheduled")]
    assert events_of(run_source(entries, tmp_path / "db", until_scanned)) == []


def test_max_eps_bounds_how_many_changes_are_handed_on_at_once(tmp_path, watched):
    entries = (Integrity(paths=(str(watched),), max_eps=3),)
    run_source(entries, tmp_path / "db", _noop)
    for n in range(10):
        (watched / "conf.d" / f"new{n}.conf").write_bytes(b"x")

    async def all_ten(source, batches):
        await until(lambda: len(events_of(batches)) >= 10, "ten changes")

    batches = run_source(entries, tmp_path / "db", all_ten)
    assert len(batches[0]) == 3
    assert len(events_of(batches)) == 10


def test_past_the_pending_bound_the_root_is_scanned_instead(tmp_path, watched):
    names = [watched / "conf.d" / f"burst{n}.conf" for n in range(40)]

    async def burst(source, batches):
        for path in names:
            path.write_bytes(b"x")
        await until(lambda: {str(p) for p in names} <= {e.fields["file"]
                                                        for e in events_of(batches)},
                    "every file of the burst")
        assert source.status()["dropped_events"] > 0

    batches = run_source((Integrity(paths=(str(watched),)),), tmp_path / "db", burst,
                         pending_limit=5)
    added = [e for e in events_of(batches) if e.decoder == "syscheck_new_entry"]
    assert sorted(e.fields["file"] for e in added) == sorted(str(p) for p in names)
    assert any(e.fields["mode"] == "scheduled" for e in added)


async def _noop(source, batches):
    pass
