"""The owner of an instance's kernel objects: kept in its database, untagged for the packaged
state directory and for databases older than owner tags; one running daemon per owner in a
network namespace."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import textwrap

import pytest

from arguard.respond import owner as owners
from arguard.respond.actions.base import OwnerConflict
from arguard.respond.owner import Owner, claim_namespace, instance_owner
from arguard.store import MIGRATIONS, Store
from tests.netns import namespace, require_netns, run_in


def test_a_new_state_directory_gets_a_tag_of_its_own_and_keeps_it(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    tag = instance_owner(Store(first / "arguard.db"), first).tag
    assert len(tag) == 8 and int(tag, 16) >= 0
    assert instance_owner(Store(second / "arguard.db"), second).tag != tag
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    assert instance_owner(Store(moved / "arguard.db"), moved).tag == tag


def test_the_packaged_state_directory_is_untagged(tmp_path, monkeypatch):
    monkeypatch.setattr(owners, "PACKAGED_STATE_DIR", tmp_path)
    assert instance_owner(Store(tmp_path / "arguard.db"), tmp_path) == Owner("")


def test_a_database_older_than_owner_tags_stays_untagged(tmp_path):
    """Its objects were made untagged: after the upgrade it still recognises them."""
    old = sqlite3.connect(tmp_path / "arguard.db")
    old.executescript(MIGRATIONS[0])
    old.execute("PRAGMA user_version = 1")
    old.close()
    assert Store(tmp_path / "arguard.db").owner_tag() == ""  # any process may upgrade it
    assert instance_owner(Store(tmp_path / "arguard.db"), tmp_path) == Owner("")


def test_one_daemon_per_owner_in_a_network_namespace():
    claim = claim_namespace(Owner("0badcafe"))
    try:
        with pytest.raises(OwnerConflict, match=rf"same owner .* \(pid {os.getpid()}\)"):
            claim_namespace(Owner("0badcafe"))
        claim_namespace(Owner("1badcafe")).close()  # another owner is no conflict
    finally:
        claim.close()
    claim_namespace(Owner("0badcafe")).close()  # released with its socket


def test_the_claim_is_per_network_namespace():
    require_netns()
    claim = claim_namespace(Owner("0badcafe"))
    try:
        code = textwrap.dedent("""
            from arguard.respond.owner import Owner, claim_namespace
            claim_namespace(Owner("0badcafe")).close()
            print("claimed")
            """)
        with namespace() as ns:
            assert run_in(ns, sys.executable, "-c", code).strip() == "claimed"
    finally:
        claim.close()
