"""Detection throughput: arguard vs fail2ban-regex vs sshguard's parser on the same auth.log.

    python benchmarks/bench_detect.py                 # 1M-line auth workload, core 0
    python benchmarks/bench_detect.py --lines 200000 --fail2ban-lines 50000 --json out.json

Steps: generate the deterministic workloads (benchmarks/workload.py) into a temp dir; fetch
Debian's fail2ban and sshguard packages with `apt-get download` and unpack them with `dpkg -x`
(nothing is installed, no service runs); then run, each pinned to one core with taskset:

* `arguard logtest --summary FILE` (this checkout, `python -m arguard.cli`, shipped ruleset),
* `fail2ban-regex FILE filter.d/sshd.conf` (the unpacked tree, system /usr/bin/python3),
* `sshg-parser < FILE` (sshguard's C attack parser),

and print wall time, lines/s, peak RSS (GNU time's %M) and how many lines
each tool flagged as attacks, next to the generator's truth count. fail2ban-regex reads the whole
file by default; --fail2ban-lines N makes it read only the first N lines, and its lines/s is then
taken from that shorter run (the output says so). A second run feeds the web workload to arguard
and to sshg-parser (which knows a few web attack patterns).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO))

from workload import DEFAULT_SEED, generate_auth, write_workload  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of one program
SSHG_PARSER_CANDIDATES = ("usr/libexec/sshguard/sshg-parser",
                          "usr/lib/x86_64-linux-gnu/sshg-parser", "usr/lib/sshguard/sshg-parser")
# Rule groups whose alerts count as "an attack line detected" for the sanity column.
ATTACK_GROUPS = frozenset({"authentication_failed", "authentication_failures", "invalid_login",
                           "recon", "exploit_attempt", "attack", "sql_injection", "web_scan",
                           "attacks"})
# issue 13's targets: auth >= 8x fail2ban-regex and >= 0.5x sshg-parser, web >= 1.0x
# sshg-parser on the same access log, peak RSS <= 60 MB for 1M lines
TARGET_FAIL2BAN_RATIO = 8.0
TARGET_SSHGUARD_RATIO = 0.5
TARGET_WEB_SSHGUARD_RATIO = 1.0
TARGET_RSS_MB = 60.0


@dataclass(frozen=True, slots=True)
class Run:
    tool: str
    lines: int
    wall_s: float
    peak_rss_mb: float
    detected: int
    note: str = ""

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall_s if self.wall_s > 0 else 0.0


def run_pinned(argv: list[str], core: int, stdin_path: Path | None, stdout_path: Path,
               env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run argv on one core; return (wall seconds, peak RSS in MB) of that program alone.

    Peak RSS comes from GNU time's %M rather than our own wait4: Linux carries the RSS high-water
    mark of the forked parent across exec, so a child forked from this (larger) Python process
    would report our RSS, not its own. GNU time is a small C program, so its child starts tiny.
    """
    rss_file = stdout_path.with_suffix(".rss")
    wrapped = [TIME, "-f", "%M", "-o", str(rss_file), "taskset", "-c", str(core), *argv]
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        with open(stdout_path, "wb") as stdout:
            started = time.perf_counter()
            finished = subprocess.run(wrapped, stdin=stdin, stdout=stdout,
                                      stderr=subprocess.STDOUT, env=env)
            wall = time.perf_counter() - started
    finally:
        if stdin_path:
            stdin.close()
    if finished.returncode != 0:
        tail = stdout_path.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{argv[0]} exited with {finished.returncode}:\n{tail}")
    peak_kb = int(rss_file.read_text().split()[-1])
    return wall, peak_kb / 1024.0


def fetch_tools(workdir: Path) -> dict[str, Path | str]:
    """apt-get download + dpkg -x fail2ban and sshguard into workdir; return paths and versions."""
    debs = workdir / "debs"
    root = workdir / "root"
    debs.mkdir()
    root.mkdir()
    # _apt cannot write into a root-only temp dir; apt then downloads as root (harmless warning).
    fetched = subprocess.run(["apt-get", "download", "-q", "fail2ban", "sshguard"], cwd=debs,
                             capture_output=True, text=True)
    if fetched.returncode != 0:
        raise SystemExit(f"apt-get download failed:\n{fetched.stderr}")
    versions: dict[str, Path | str] = {}
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        name, version = (subprocess.run(["dpkg-deb", "-f", str(deb), field], check=True,
                                        capture_output=True, text=True).stdout.strip()
                         for field in ("Package", "Version"))
        versions[name] = version
    parser = next((root / c for c in SSHG_PARSER_CANDIDATES if (root / c).is_file()), None)
    if parser is None:
        found = sorted(root.rglob("sshg-parser"))
        if not found:
            raise SystemExit("sshg-parser not found in the unpacked sshguard package")
        parser = found[0]
    versions["sshg_parser"] = parser
    versions["fail2ban_regex"] = root / "usr/bin/fail2ban-regex"
    versions["fail2ban_pythonpath"] = root / "usr/lib/python3/dist-packages"
    versions["sshd_filter"] = root / "etc/fail2ban/filter.d/sshd.conf"
    return versions


def head_lines(source: Path, lines: int, target: Path) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        for count, line in enumerate(src):
            if count >= lines:
                break
            dst.write(line)
    return target


def attack_rule_ids() -> set[int]:
    """Ids of the shipped rules whose groups mark an attack (loaded from this checkout)."""
    from arguard.config import load_config, resolve_config_path
    from arguard.ruleset.files import load_ruleset

    ruleset = load_ruleset(load_config(resolve_config_path(None)))
    return {rid for rid, rule in ruleset.rules.rules.items()
            if ATTACK_GROUPS.intersection(rule.groups)}


ALERT_ROW = re.compile(r"^\s+(\d+)\s+level\s+\d+\s+(\d+)\s")


def run_arguard(path: Path, lines: int, core: int, out: Path, attack_ids: set[int]) -> Run:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("ARGUARD_CONFIG", None)
    wall, rss = run_pinned([sys.executable, "-m", "arguard.cli", "logtest", "--summary",
                            str(path)], core, None, out, env)
    text = out.read_text()
    detected = sum(int(m.group(2)) for m in map(ALERT_ROW.match, text.splitlines())
                   if m and int(m.group(1)) in attack_ids)
    internal = re.search(r"Time:\s+([\d.]+) s", text)
    note = f"in-loop {lines / float(internal.group(1)):,.0f} lines/s" if internal else ""
    return Run("arguard", lines, wall, rss, detected, note)


def run_fail2ban(path: Path, lines: int, core: int, out: Path, tools: dict) -> Run:
    env = dict(os.environ, PYTHONPATH=str(tools["fail2ban_pythonpath"]))
    wall, rss = run_pinned([SYSTEM_PYTHON, str(tools["fail2ban_regex"]), "--print-no-missed",
                            "--print-no-ignored", str(path), str(tools["sshd_filter"])],
                           core, None, out, env)
    summary = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed",
                        out.read_text())
    if summary is None:
        raise SystemExit(f"fail2ban-regex printed no summary, see {out}")
    return Run("fail2ban-regex", lines, wall, rss, int(summary.group(3)),
               "'matched' failures, sshd filter, mode normal")


def run_sshguard(path: Path, lines: int, core: int, out: Path, tools: dict) -> Run:
    wall, rss = run_pinned([str(tools["sshg_parser"])], core, path, out)
    with open(out, "rb") as printed:
        detected = sum(1 for _ in printed)
    return Run("sshg-parser", lines, wall, rss, detected, "attack lines printed")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _print_runs(title: str, runs: list[Run], truth: dict) -> None:
    print(f"\n{title}")
    print(f"  {'tool':<16}{'lines':>10}{'wall s':>9}{'lines/s':>12}{'peak RSS MB':>13}"
          f"{'attack lines':>14}  note")
    for run in runs:
        print(f"  {run.tool:<16}{run.lines:>10,}{run.wall_s:>9.2f}{run.lines_per_s:>12,.0f}"
              f"{run.peak_rss_mb:>13.1f}{run.detected:>14,}  {run.note}")
    print(f"  generator truth: {truth['attack_lines']:,} attack lines of {truth['lines']:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="auth workload lines")
    parser.add_argument("--fail2ban-lines", type=int, default=0,
                        help="lines fail2ban-regex reads (0: all); its lines/s is scaled")
    parser.add_argument("--web-lines", type=int, default=200_000, help="web workload lines")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin every tool to")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print it")
    args = parser.parse_args(argv)
    for tool in ("taskset", "apt-get", "dpkg", "dpkg-deb", TIME):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required")

    workdir = Path(tempfile.mkdtemp(prefix="arguard-bench-"))
    try:
        tools = fetch_tools(workdir)
        auth = workdir / "auth.log"
        truth = write_workload("auth", args.lines, auth, args.seed)
        f2b_lines = args.lines if args.fail2ban_lines <= 0 else min(args.fail2ban_lines,
                                                                     args.lines)
        f2b_file = auth if f2b_lines == args.lines else head_lines(auth, f2b_lines,
                                                                   workdir / "auth-f2b.log")
        attack_ids = attack_rule_ids()
        out = workdir / "out"
        out.mkdir()
        arguard = run_arguard(auth, args.lines, args.core, out / "arguard.txt", attack_ids)
        fail2ban = run_fail2ban(f2b_file, f2b_lines, args.core, out / "fail2ban.txt", tools)
        if f2b_lines != args.lines:
            fail2ban = Run(fail2ban.tool, fail2ban.lines, fail2ban.wall_s, fail2ban.peak_rss_mb,
                           fail2ban.detected,
                           f"first {f2b_lines:,} lines only; lines/s scaled to the full file")
        sshguard = run_sshguard(auth, args.lines, args.core, out / "sshguard.txt", tools)
        web = workdir / "web.log"
        web_truth = write_workload("web", args.web_lines, web, args.seed)
        web_run = run_arguard(web, args.web_lines, args.core, out / "arguard-web.txt", attack_ids)
        web_sshguard = run_sshguard(web, args.web_lines, args.core, out / "sshguard-web.txt",
                                    tools)

        size_mb = auth.stat().st_size / 1e6
        print("arguard detection benchmark")
        print(f"  host: {_cpu_model()}, {os.cpu_count()} CPUs, every tool pinned to core "
              f"{args.core} (taskset); wall time includes start-up")
        print(f"  arguard: {sys.executable} (Python {platform.python_version()}), "
              f"checkout {REPO}, shipped decoders/rules")
        system_python = subprocess.run([SYSTEM_PYTHON, "--version"], capture_output=True,
                                       text=True).stdout.strip()
        print(f"  fail2ban {tools['fail2ban']} (Debian package, {SYSTEM_PYTHON}: "
              f"{system_python}), filter.d/sshd.conf; sshguard {tools['sshguard']} sshg-parser")
        print(f"  auth workload: {args.lines:,} lines, {size_mb:.1f} MB, seed {args.seed}")
        _print_runs("Auth workload", [arguard, fail2ban, sshguard], truth)
        if f2b_lines != args.lines:
            head_truth = sum(attack for _, _, attack in generate_auth(f2b_lines, args.seed))
            print(f"  fail2ban-regex read the first {f2b_lines:,} lines: truth there "
                  f"{head_truth:,} attack lines")
        ratio_f2b = arguard.lines_per_s / fail2ban.lines_per_s
        ratio_sshg = arguard.lines_per_s / sshguard.lines_per_s

        def verdict(ok: bool) -> str:
            return "meets target" if ok else "BELOW target"

        print("\nRatios (lines/s, wall time)")
        print(f"  arguard / fail2ban-regex: {ratio_f2b:6.2f}x  (target >= "
              f"{TARGET_FAIL2BAN_RATIO:.0f}x: {verdict(ratio_f2b >= TARGET_FAIL2BAN_RATIO)})")
        print(f"  arguard / sshg-parser:    {ratio_sshg:6.2f}x  (target >= "
              f"{TARGET_SSHGUARD_RATIO:.1f}x: {verdict(ratio_sshg >= TARGET_SSHGUARD_RATIO)})")
        print(f"  arguard peak RSS:         {arguard.peak_rss_mb:6.1f} MB (target <= "
              f"{TARGET_RSS_MB:.0f} MB for 1M lines: "
              f"{verdict(arguard.peak_rss_mb <= TARGET_RSS_MB)})")
        _print_runs("Web workload", [web_run, web_sshguard], web_truth)
        ratio_web = web_run.lines_per_s / web_sshguard.lines_per_s
        print(f"  arguard / sshg-parser:    {ratio_web:6.2f}x  (target >= "
              f"{TARGET_WEB_SSHGUARD_RATIO:.1f}x: "
              f"{verdict(ratio_web >= TARGET_WEB_SSHGUARD_RATIO)})")
        if args.json:
            result = {"auth": [dict(asdict(r), lines_per_s=r.lines_per_s)
                               for r in (arguard, fail2ban, sshguard)],
                      "web": [dict(asdict(r), lines_per_s=r.lines_per_s)
                              for r in (web_run, web_sshguard)],
                      "truth": {"auth": truth, "web": web_truth},
                      "ratios": {"fail2ban": ratio_f2b, "sshguard": ratio_sshg,
                                 "web_sshguard": ratio_web},
                      "versions": {k: str(v) for k, v in tools.items()
                                   if k in ("fail2ban", "sshguard")},
                      "core": args.core, "cpu": _cpu_model()}
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
