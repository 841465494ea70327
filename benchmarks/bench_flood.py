"""Correlation under a flood: does an attacker still fire rule 5712 when a million one-shot
sources, each from its own IPv6 /64, arrive between its 7th and 8th failure, and how much
memory does it take?

    python benchmarks/bench_flood.py [--flood 1000000] [--core 0]

Writes, into a temp dir, 7 `Invalid user` lines from 10.60.0.1, then FLOOD one-line `Invalid
user` lines each from its own /64 (2001:db8:X:Y::1), then the 8th from 10.60.0.1, all within
the 120 s of rule 5712; runs `arguard logtest --summary` on it pinned to one core (this
checkout, the shipped ruleset, `[ruleset] correlation_keys` at its default), and prints
whether 5712 fired, the wall time, lines/s and peak RSS (GNU time's %M). Then the same file
with `correlation_keys` at the flood's size, where nothing is evicted, for the memory the
bound saves.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIME = "/usr/bin/time"
ATTACKER = "10.60.0.1"


def write_flood(path: Path, flood: int) -> None:
    def line(second: int, address: str, port: int) -> str:
        return (f"Nov 22 10:{second // 60:02d}:{second % 60:02d} host sshd[1]: Invalid user u "
                f"from {address} port {port}\n")

    with open(path, "w") as out:
        for port in range(7):
            out.write(line(0, ATTACKER, 1000 + port))
        for n in range(flood):
            out.write(line(1 + n * 100 // flood, f"2001:db8:{n >> 16:x}:{n & 0xffff:x}::1", 22))
        out.write(line(110, ATTACKER, 1007))


def run(config: Path, log: Path, core: int) -> tuple[bool, float, int, int]:
    rss_file = log.with_suffix(".rss")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    result = subprocess.run([TIME, "-f", "%M", "-o", str(rss_file), "taskset", "-c", str(core),
                             sys.executable, "-m", "arguard.cli", "logtest", "--summary", "-c",
                             str(config), str(log)], capture_output=True, text=True, env=env,
                            check=True)
    elapsed = time.perf_counter() - started
    lines = sum(1 for _ in open(log))
    fired = any(row.split()[:1] == ["5712"] for row in result.stdout.splitlines())
    return fired, elapsed, lines, int(rss_file.read_text().split()[-1])


def config_with(directory: Path, keys: int | None) -> Path:
    for name in ("decoders.d", "rules.d", "state", "log", "run", "bin"):
        (directory / name).mkdir(exist_ok=True)
    path = directory / f"arguard-{keys or 'default'}.toml"
    path.write_text('[paths]\nstate_dir = "state"\nlog_dir = "log"\nrun_dir = "run"\n'
                    'decoders_d = "decoders.d"\nrules_d = "rules.d"\nar_bin_dir = "bin"\n'
                    + (f"\n[ruleset]\ncorrelation_keys = {keys}\n" if keys else ""))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=1_000_000)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    print(f"# bench_flood: {args.flood:,} one-shot sources between an attacker's 7th and 8th "
          f"failure; Python {platform.python_version()}, {platform.machine()}, "
          f"taskset -c {args.core}")
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        log = directory / "flood.log"
        write_flood(log, args.flood)
        print(f"{'correlation_keys':<28} {'5712 fired':>10} {'lines':>10} {'wall s':>8} "
              f"{'lines/s':>9} {'peak RSS MB':>12}")
        for keys in (None, args.flood + 16):
            fired, elapsed, lines, rss = run(config_with(directory, keys), log, args.core)
            label = "default (100000)" if keys is None else f"{keys:,} (no eviction)"
            print(f"{label:<28} {'yes' if fired else 'NO':>10} {lines:>10,} {elapsed:>8.2f} "
                  f"{lines / elapsed:>9,.0f} {rss / 1024:>12.1f}")


if __name__ == "__main__":
    main()
