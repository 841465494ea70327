"""A real firewalld (tests/firewalld.py: nftables backend, private namespace and bus): a
firewalld reload, asked over D-Bus, deletes and remakes firewalld's own table and leaves
arguard's nftables table and its blocks in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.firewalld import private_firewalld
from tests.netns import ActionProcess, namespace, run_in


@pytest.fixture
def firewalld(tmp_path: Path):
    with namespace("arguard-fwd") as ns, private_firewalld(tmp_path, ns) as firewalld:
        yield firewalld


def test_a_firewalld_reload_keeps_arguards_blocks(firewalld):
    ns = firewalld.ns
    with ActionProcess(ns, "nftables", {}, name="firewall-drop") as action:
        action.add("203.0.113.5", 600)
        before = run_in(ns, "nft", "-a", "list", "table", "inet", "firewalld")
        firewalld.reload()
        after = run_in(ns, "nft", "-a", "list", "table", "inet", "firewalld")
        assert before != after  # made again: new handles
        assert "203.0.113.5 timeout 10m" in run_in(ns, "nft", "list", "ruleset")
        assert action.check("203.0.113.5")
