"""The `firewall` action's choice of backend: nftables where the kernel answers nf_tables,
ipset + iptables-legacy where it does not, and what check-config says about it.

The kernel of this machine has nf_tables, so the "no nf_tables" case is given to the
detection as its input — the kernel's answer to the probe (EOPNOTSUPP, what nfnetlink
answers for a subsystem it does not have) —, never claimed of the kernel itself."""

from __future__ import annotations

import errno
import sys

import pytest

from arguard import cli
from arguard.respond.actions import firewall
from tests.netns import namespace, run_in


@pytest.fixture
def without_nf_tables(monkeypatch):
    monkeypatch.setattr(firewall, "probe_nf_tables", lambda: errno.EOPNOTSUPP)
    firewall.host_choice.cache_clear()
    yield
    firewall.host_choice.cache_clear()


def test_the_kernels_answer_chooses_the_backend():
    assert firewall.choose(0) == firewall.Choice("nftables", "the kernel has nf_tables")
    assert firewall.choose(errno.EOPNOTSUPP).action == "ipset"
    assert firewall.choose(None).action == "ipset"
    assert firewall.choose(errno.EPERM).action is None  # not root: cannot tell


def test_check_config_says_ipset_and_why_on_a_host_without_nf_tables(without_nf_tables,
                                                                     capsys):
    assert cli.main(["check-config"]) == 0  # the shipped configuration
    assert ("command firewall-drop: firewall → ipset + iptables-legacy (this kernel has no "
            "nf_tables: it answers an nf_tables request with 'Operation not supported')") \
        in capsys.readouterr().out


def test_check_config_says_nftables_on_this_kernel():
    with namespace() as ns:
        out = run_in(ns, sys.executable, "-m", "arguard.cli", "check-config")
    assert "command firewall-drop: firewall → nftables (the kernel has nf_tables)" in out
