"""The firewalld action against a real firewalld (tests/firewalld.py: private namespace, private
D-Bus bus). The action runs in the test process — it makes no kernel call of its own, only
D-Bus calls, which firewalld carries out in its namespace — and what it did is read back from
firewalld over D-Bus with another client (python3-dbus), and from nft in the namespace."""

from __future__ import annotations

import queue
from pathlib import Path
from types import MappingProxyType

import pytest

from arguard.config import Command, Paths, load_config
from arguard.respond.actions import ActionContext, ActionError, build_action
from arguard.respond.owner import UNTAGGED
from arguard.respond.stage import build_respond_stage
from arguard.store import Store
from tests.conftest import write_config
from tests.firewalld import private_firewalld
from tests.netns import namespace, run_in

ADDRESS, NETWORK, NETWORK6 = "203.0.113.5", "198.51.100.0/24", "2001:db8:1:2::/64"


@pytest.fixture
def firewalld(tmp_path: Path, monkeypatch):
    with namespace("arguard-fwd") as ns, private_firewalld(tmp_path, ns) as firewalld:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", firewalld.env["DBUS_SYSTEM_BUS_ADDRESS"])
        yield firewalld


def firewalld_action(options: dict | None = None, reset=None):
    command = Command(name="firewalld-drop", action="firewalld", expect="srcip",
                      timeout_allowed=True, options=MappingProxyType(options or {}))
    return build_action(command, ActionContext(Paths(), UNTAGGED, backend_reset=reset))


def test_blocks_are_sources_of_the_drop_zone_as_firewalld_reports_them(firewalld):
    action = firewalld_action()
    for target in (ADDRESS, NETWORK, NETWORK6):
        action.add(target, 600, None)
    action.add(ADDRESS, 900, None)  # extended: already a source, nothing changes
    assert firewalld.sources("drop") == {ADDRESS, NETWORK, NETWORK6}
    assert f"ip saddr {ADDRESS}" in run_in(firewalld.ns, "nft", "list", "table", "inet",
                                           "firewalld")
    assert action.check(ADDRESS) and action.check(NETWORK6)
    assert action.list_targets() is None  # a shared zone: the admin's sources look the same
    action.delete(ADDRESS)
    action.delete(ADDRESS)  # not there: nothing to do
    assert firewalld.sources("drop") == {NETWORK, NETWORK6}
    assert not action.check(ADDRESS)
    assert firewalld.permanent_sources("drop") == set()  # runtime only by default


def test_an_address_the_admin_put_in_another_zone_is_refused_not_moved(firewalld):
    firewalld.call("addSource", "trusted", ADDRESS)
    with pytest.raises(ActionError, match=r"source of another zone \(trusted\)"):
        firewalld_action().add(ADDRESS, 600, None)
    assert firewalld.sources("trusted") == {ADDRESS}
    assert firewalld.sources("drop") == set()


def test_a_zone_firewalld_does_not_have_is_refused_with_the_ones_it_has(firewalld):
    with pytest.raises(ActionError, match=r"no zone 'dorp' \(it has: arguard, block, drop"):
        firewalld_action({"zone": "dorp"})


def test_permanent_blocks_are_kept_by_firewalld_across_a_reload(firewalld):
    action = firewalld_action({"permanent": True})
    action.add(ADDRESS, 600, None)
    assert firewalld.permanent_sources("drop") == {ADDRESS}
    firewalld.reload()
    assert firewalld.sources("drop") == {ADDRESS}
    assert action.check(ADDRESS)
    action.delete(ADDRESS)
    assert firewalld.sources("drop") == firewalld.permanent_sources("drop") == set()


def test_reloads_and_restarts_are_reported_to_the_daemon(firewalld):
    resets: queue.Queue = queue.Queue()
    action = firewalld_action(reset=lambda command, why: resets.put((command, why)))
    action.add(ADDRESS, 600, None)
    firewalld.reload()
    assert resets.get(timeout=30) == ("firewalld-drop", "firewalld reloaded")
    assert not action.check(ADDRESS)  # what a reload does to runtime sources
    firewalld.stop()
    with pytest.raises(ActionError, match="firewalld is not running"):
        action.add(ADDRESS, 600, None)
    firewalld.start()
    assert resets.get(timeout=30) == ("firewalld-drop", "firewalld started again")
    assert resets.empty()


def test_an_exclusive_zone_is_reconciled_both_ways(firewalld, tmp_path: Path):
    (tmp_path / "arguard").mkdir()
    config = load_config(write_config(tmp_path / "arguard", extra="""
        [[command]]
        name = "firewalld-drop"
        action = "firewalld"
        zone = "arguard"
        exclusive = true
        timeout_allowed = true
        """))
    stage = build_respond_stage(config, Store(config.paths.database))
    assert stage.block(ADDRESS, timeout=600).verb == "add"
    firewalld.reload()  # no daemon listening here: the block is lost until reconciled
    firewalld.call("addSource", "arguard", "192.0.2.99")  # not in the blocks table
    reconciled = stage.responder.reconcile()
    assert [applied.target for applied in reconciled.restored] == [ADDRESS]
    assert [applied.target for applied in reconciled.removed] == ["192.0.2.99"]
    assert firewalld.sources("arguard") == {ADDRESS}
