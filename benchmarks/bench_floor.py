"""How fast can any CPython detector be? Lines/s of deliberately minimal loops on the auth
workload, as the reference for arguard's figure in bench_detect.py.

    python benchmarks/bench_floor.py [--lines 1000000] [--core 0] [--seed N]

Each loop is pinned to one core (taskset) in its own process, reads the same generated file
(benchmarks/workload.py) and does strictly less than a detector must:

1. iterate over the text lines, nothing else;
2. + match a syslog header regex (time, host, program, pid) per line;
3. + for sshd lines, one regex for "Failed/Invalid … from ADDR port N" and a dict of fields;
4. + three more regex or substring checks per sshd line (what choosing a decoder child and
   walking two rule levels cost at the very least) and one small object per matched line.

arguard's pipeline does much more per sshd line than loop 4 (about 36 child decoders, a
rule tree of 60+ sshd rules in Wazuh's order, frequency windows, source memory), so loop 4's
lines/s is an upper bound for a CPython implementation of the same semantics on this machine.
The figures print next to the targets of issue 2 (sshguard's sshg-parser lines/s, 20x
fail2ban-regex), which bench_detect.py measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from workload import DEFAULT_SEED, write_workload  # noqa: E402

HEADER = re.compile(r"(\w{3} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([\w\-]+)(?:\[(\d+)\])?: ")
ATTACK = re.compile(r"(?:Failed \S+ for (?:invalid user )?(.*?)|Invalid user (.*?)) from (\S+)"
                    r" port (\d+)")
CHILD = re.compile(r"^(?:Failed|Invalid|Connection closed|Disconnected) ")
LOOPS = ("lines", "header", "attack", "detector")


def run_loop(kind: str, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    with open(path, encoding="utf-8", errors="replace") as source:
        if kind == "lines":
            for _ in source:
                count += 1
        elif kind == "header":
            for line in source:
                count += 1
                HEADER.match(line)
        else:
            detector = kind == "detector"
            found = []
            for line in source:
                count += 1
                header = HEADER.match(line)
                if header is None or not header.group(3).startswith("sshd"):
                    continue
                message = line[header.end():]
                if detector:
                    CHILD.match(message)
                    lowered = message.lower()
                    if "invalid user" not in lowered:
                        "failed password" in lowered  # noqa: B015 - the check is the cost
                attack = ATTACK.match(message)
                if attack is not None:
                    fields = {"srcip": attack.group(3), "srcport": attack.group(4)}
                    if detector:
                        found.append((header.group(1), fields))
                        if len(found) > 10_000:
                            found.clear()
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        count, elapsed = run_loop(args.loop, args.file)
        print(f"{count} {elapsed}")
        return
    with tempfile.TemporaryDirectory(prefix="arguard-floor-") as tmp:
        path = os.path.join(tmp, "auth.log")
        write_workload("auth", args.lines, Path(path), args.seed)
        print("CPython floor for a log detector (benchmarks/bench_floor.py)")
        print(f"  host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, pinned to core {args.core} (taskset)")
        print(f"  auth workload: {args.lines:,} lines (seed {args.seed})")
        print(f"  {'loop':<10} {'lines/s':>12}  {'us/line':>8}")
        for kind in LOOPS:
            output = subprocess.run(
                ["taskset", "-c", str(args.core), sys.executable, __file__, "--loop", kind,
                 "--file", path], check=True, capture_output=True, text=True).stdout.split()
            count, elapsed = int(output[0]), float(output[1])
            print(f"  {kind:<10} {count / elapsed:>12,.0f}  {1e6 * elapsed / count:>8.2f}")


if __name__ == "__main__":
    main()
