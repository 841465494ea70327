"""Detection throughput: arguard vs fail2ban-regex vs sshguard's sshg-parser, same file.

    python benchmarks/bench_detect.py [--lines 1000000] [--fail2ban-lines 100000]

Fetches Debian's fail2ban and sshguard packages with `apt-get download` into a temp dir and
unpacks them with `dpkg -x` (nothing is installed, no service starts). Generates the mixed
auth workload (benchmarks/workload.py), then runs each tool pinned to one core (taskset -c 0)
on it: `arguard logtest --summary` with the full shipped ruleset, `fail2ban-regex` with
fail2ban's sshd filter (on the first --fail2ban-lines lines, as it is slow; its lines/s is
computed on what it read), and `sshg-parser` reading the file on stdin. Prints wall time,
lines/s, peak RSS and detected attack lines per tool, and the ratios. Then arguard alone on
the web workload. Targets (issue 2): arguard >= sshguard's lines/s, >= 20x fail2ban-regex,
peak RSS < 60 MB for 1M lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from workload import auth_lines, web_lines  # noqa: E402


_MEASURE = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], stdout=sys.stdout)\n"
            "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
            " file=sys.stderr)\n"
            "sys.exit(done.returncode)")


def run(argv: list[str], stdin_path: Path | None = None, env: dict | None = None
        ) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in kB, stdout) of one run pinned to core 0; the peak RSS is
    read by a fresh measuring parent, so earlier runs cannot hide a smaller one."""
    start = time.perf_counter()
    with open(stdin_path or os.devnull, "rb") as stdin:
        done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", _MEASURE, *argv],
                              stdin=stdin, capture_output=True, env=env, check=True)
    elapsed = time.perf_counter() - start
    peak = int(re.findall(rb"maxrss (\d+)", done.stderr)[-1])
    return elapsed, peak, done.stdout.decode()


def fetch_tools(directory: Path) -> tuple[Path, Path]:
    subprocess.run(["apt-get", "download", "fail2ban", "sshguard"], cwd=directory, check=True,
                   capture_output=True)
    root = directory / "root"
    for package in directory.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(package), str(root)], check=True)
    parser = next(root.rglob("sshg-parser"))
    return root, parser


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--lines", type=int, default=1_000_000)
    options.add_argument("--fail2ban-lines", type=int, default=100_000)
    args = options.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        root, parser = fetch_tools(directory)
        auth = directory / "auth.log"
        auth.write_text("".join(line + "\n" for line in auth_lines(args.lines)))
        small = directory / "auth-small.log"
        small.write_text("".join(line + "\n" for line in islice(auth_lines(args.lines),
                                                                 args.fail2ban_lines)))
        web = directory / "access.log"
        web.write_text("".join(line + "\n" for line in web_lines(args.lines // 5)))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        arguard = [sys.executable, "-m", "arguard.cli", "logtest", "--summary"]

        results = {}
        seconds, rss, out = run([*arguard, str(auth)], env=env)
        alerts = sum(int(count) for rule, level, count in re.findall(
            r"^\s+(5[57]\d\d)\s+level\s+(\d+)\s+(\d+)", out, re.M) if int(level) >= 5)
        results["arguard"] = (args.lines, seconds, rss, alerts)

        f2b_env = {**os.environ, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")}
        seconds, rss, out = run(["/usr/bin/python3", str(root / "usr/bin/fail2ban-regex"),
                                 str(small), str(root / "etc/fail2ban/filter.d/sshd.conf")],
                                env=f2b_env)
        matched = int(re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", out).group(1))
        results["fail2ban-regex"] = (args.fail2ban_lines, seconds, rss, matched)

        seconds, rss, out = run([str(parser)], stdin_path=auth)
        results["sshg-parser"] = (args.lines, seconds, rss, len(out.splitlines()))

        web_seconds, web_rss, _ = run([*arguard, str(web)], env=env)

    print(f"bench_detect: mixed auth.log of {args.lines} lines ({auth_lines.__module__}.py), "
          f"one core (taskset -c 0); {platform.python_implementation()} "
          f"{platform.python_version()}, fail2ban and sshguard from Debian's packages")
    print(f"{'tool':16} {'lines':>9} {'seconds':>8} {'lines/s':>10} {'peak RSS':>9} "
          f"{'attack lines':>13}")
    rates = {}
    for tool, (lines, seconds, rss, hits) in results.items():
        rates[tool] = lines / seconds
        print(f"{tool:16} {lines:9d} {seconds:8.2f} {rates[tool]:10.0f} {rss / 1024:7.1f}MB "
              f"{hits:13d}")
    print("  (arguard's attack lines = sshd/PAM alerts of level >= 5; fail2ban's = matched lines of "
          "its sample; sshguard's = attacks it printed)")
    print(f"arguard / fail2ban-regex: {rates['arguard'] / rates['fail2ban-regex']:.1f}x "
          f"(target >= 20x)")
    print(f"arguard / sshg-parser:    {rates['arguard'] / rates['sshg-parser']:.2f}x "
          f"(target >= 1x)")
    print(f"arguard on a {args.lines // 5}-line web access log: "
          f"{args.lines // 5 / web_seconds:.0f} lines/s, peak RSS {web_rss / 1024:.1f} MB")
    return 0


if __name__ == "__main__":
    if shutil.which("taskset") is None or shutil.which("apt-get") is None:
        sys.exit("bench_detect needs taskset and apt-get (Debian)")
    sys.exit(main())
