"""Benchmark: the nftables and ipset backends (the `firewall` action's two choices) side by
side, and the per-rule iptables backend.

Run as root:  python benchmarks/bench_ipset.py [--quick]

The script creates a private network namespace, runs itself inside it (`ip netns exec`), and
deletes the namespace afterwards: the host's own firewall is never touched. Inside, it uses
the real actions built by `build_action`, exactly as the daemon does, and measures:

  nftables  as ipset below, and 10 000 IPv6 /64 prefixes added one by one (interval set);
            each level in sets of their own (a command per level: empty sets, no flush)
  ipset     10 000 blocks added one by one (action.add)                      goal < 1 s
            100 000 active blocks restored after a reboot (empty sets):
              action.add_many, and the daemon's whole reconcile() from a
              blocks table of 100 000 rows (SQLite, active-responses.log)     goal < 3 s
            the start-up listing of 100 000 members (list_targets)
            per-ban cost with 1, 1 000, 10 000 and 100 000 entries            goal: flat
  iptables  per-ban cost with 1 000 and 10 000 rules in arguard's chain, and 1 000 blocks
            added one by one from an empty chain

Per-ban cost: the set (or chain) is filled to the level (ipset: add_many; iptables:
iptables-legacy-restore), then SAMPLES fresh addresses are each added (timed) and deleted
again (not timed), so the level stays put; the median and 90th percentile are printed.
Wall-clock time.perf_counter(); one run, no warm-up beyond the fill. --quick uses fewer
samples and skips the 10 000-rule iptables level (which takes the longest).
"""

from __future__ import annotations

import ipaddress
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 500


def main() -> None:
    if "--inside" in sys.argv:
        sys.path.insert(0, str(REPO))
        run_inside(quick="--quick" in sys.argv)
        return
    if os.geteuid() != 0:
        sys.exit("bench_ipset.py needs root (it creates a network namespace)")
    name = f"arguard-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__,
                               "--inside", *sys.argv[1:]],
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    sys.exit(done.returncode)


def addresses(count: int, first: str = "10.0.0.1") -> list[str]:
    start = int(ipaddress.IPv4Address(first))
    return [str(ipaddress.IPv4Address(start + i)) for i in range(count)]


def build(action: str, name: str | None = None, **options):
    from arguard.config import Command, Paths
    from arguard.respond.actions import ActionContext, build_action
    from arguard.respond.owner import UNTAGGED

    return build_action(Command(name=name or f"bench-{action}", action=action, expect="srcip",
                                timeout_allowed=True, options=MappingProxyType(options)),
                        ActionContext(Paths(), UNTAGGED))


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def per_ban(action, samples: int) -> tuple[float, float]:
    """Median and 90th percentile (µs) of one add of a fresh address; each is deleted again."""
    costs = []
    for target in addresses(samples, "172.16.0.1"):
        costs.append(timed(action.add, target, 600, None))
        action.delete(target)
    costs.sort()
    return statistics.median(costs) * 1e6, costs[int(len(costs) * 0.9)] * 1e6


def flush_ipset(name: str) -> None:
    for set_name in (name, f"{name}6"):
        subprocess.run(["ipset", "flush", set_name], check=True)


def fill_iptables(chain: str, count: int) -> None:
    """`count` one-address DROP rules in the chain, through iptables-legacy-restore."""
    lines = ["*filter", f"-F {chain}"]
    lines += [f"-A {chain} -s {a}/32 -j DROP" for a in addresses(count)]
    lines.append("COMMIT\n")
    subprocess.run(["iptables-legacy-restore", "--noflush"], input="\n".join(lines),
                   text=True, check=True)


def run_inside(quick: bool) -> None:
    import pyroute2

    samples = 100 if quick else SAMPLES
    report = Report()
    report.line(f"kernel {platform.release()}, Python {platform.python_version()}, pyroute2 "
                f"{pyroute2.__version__}, python-iptables {_version('python-iptables')}, "
                f"{os.cpu_count()} CPUs ({_cpu()}), private network namespace")

    # --- nftables ------------------------------------------------------------------------
    report.section("nftables (hash set per family, one rule per set, netlink transactions)")
    backend_figures(report, "nftables", lambda label: build("nftables", name=f"bench-{label}"),
                    samples)
    prefixes = [str(ipaddress.IPv6Network((0x2001_0db8_0000_0000 + i << 64, 64)))
                for i in range(10_000)]
    report.figure("10 000 IPv6 /64 prefixes added one by one",
                  _each(build("nftables", name="bench-prefixes").add, prefixes), "< 1 s")

    # --- ipset ---------------------------------------------------------------------------
    report.section("ipset (hash:ip + one iptables rule per family)")
    ipset = build("ipset", set_name="bench")

    def flushed(label: str):
        flush_ipset("bench")
        return ipset

    backend_figures(report, "ipset", flushed, samples)

    # --- iptables ------------------------------------------------------------------------
    iptables = build("iptables", chain="bench")
    report.section("iptables (one rule per address, libiptc)")
    fill_iptables("bench", 0)
    report.figure("1 000 blocks added one by one (empty chain)",
                  _each(iptables.add, addresses(1_000)))
    for level in (1_000,) if quick else (1_000, 10_000):
        fill_iptables("bench", level)
        median, p90 = per_ban(iptables, max(20, samples // 10))
        report.cost(f"per ban with {level:>7,} rules", median, p90)
    fill_iptables("bench", 0)
    report.line(f"(per-ban samples: ipset {samples}, iptables {max(20, samples // 10)})")


def backend_figures(report: Report, backend: str, empty, samples: int) -> None:
    """The figures both firewall backends are measured by; `empty(label)` gives the
    backend's action with empty sets (nftables: a command of its own; ipset: flushed)."""
    report.figure("10 000 blocks added one by one", _each(empty("add").add, addresses(10_000)),
                  "< 1 s")
    items = [(a, 600 + i % 3600) for i, a in enumerate(addresses(100_000))]
    restored = empty("restore")
    report.figure("100 000 blocks restored with add_many (empty set)",
                  timed(restored.add_many, items), "< 3 s")
    start = time.perf_counter()
    listed = restored.list_targets()
    report.figure(f"list_targets with {len(listed)} members", time.perf_counter() - start)
    report.figure("100 000 blocks: whole reconcile() after a reboot",
                  reconcile(100_000, backend), "< 3 s")
    for level in (1, 1_000, 10_000, 100_000):
        filled = empty(f"level-{level}")
        filled.add_many([(a, 600) for a in addresses(level)])
        median, p90 = per_ban(filled, samples)
        report.cost(f"per ban with {level:>7,} entries", median, p90)


def _each(add, targets: list[str]) -> float:
    start = time.perf_counter()
    for target in targets:
        add(target, 600, None)
    return time.perf_counter() - start


def reconcile(count: int, action: str) -> float:
    """Seconds for the responder's reconcile() to restore `count` active blocks into empty
    sets: a real config, SQLite store and active-responses.log in a temp directory. Sets
    (and an nftables table) of their own: the temp directory is another instance than the
    one that made the others (arguard.respond.owner)."""
    from arguard.config import load_config
    from arguard.model import Block
    from arguard.respond.stage import build_respond_stage
    from arguard.store import Store

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "arguard.toml"
        path.write_text('[paths]\nstate_dir = "."\nlog_dir = "."\nrun_dir = "."\n'
                        '[ruleset]\nshipped = false\n'
                        f'[[command]]\nname = "firewall-drop"\naction = "{action}"\n'
                        + ('set_name = "bench-r"\n' if action == "ipset" else
                           'table = "bench-reconcile"\n')
                        + 'timeout_allowed = true\n')
        config = load_config(path)
        store = Store(config.paths.database)
        now = time.time()
        with store.transaction():
            for i, target in enumerate(addresses(count)):
                store.insert_block(Block(target, "ip", "firewall-drop", 5712, None, now,
                                         now + 600 + i % 3600, 1))
        responder = build_respond_stage(config, store).responder
        start = time.perf_counter()
        result = responder.reconcile()
        elapsed = time.perf_counter() - start
        assert result.counts()["restored"] == count, result.counts()
        store.close()
    return elapsed


class Report:
    def section(self, title: str) -> None:
        print(f"\n{title}", flush=True)

    def line(self, text: str) -> None:
        print(text, flush=True)

    def figure(self, what: str, seconds: float, goal: str = "") -> None:
        print(f"  {what:<52} {seconds:8.3f} s" + (f"   (goal {goal})" if goal else ""),
              flush=True)

    def cost(self, what: str, median: float, p90: float) -> None:
        print(f"  {what:<52} {median:8.1f} µs median, {p90:8.1f} µs p90", flush=True)


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
