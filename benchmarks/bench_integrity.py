"""File integrity benchmark (issue 19): baseline scan of a large tree, realtime change-to-alert
latency at that size, and restore-file's time to put a tampered file back.

    python benchmarks/bench_integrity.py [--files 100000] [--writes 1000] [--rate 50]
                                         [--restores 200] [--core 0] [--no-aide]

How it runs, all in one temp dir:

1. Writes a tree of --files regular files (100 per directory, 64 B to 4 KiB each, 1 % of
   them 64 KiB; deterministic content).
2. Baseline scan, side by side, each pinned to --core with taskset and measured by GNU time
   (wall seconds, peak RSS `%M`): arguard's scanner (arguard.integrity.baseline, the code the
   daemon runs, on a fresh SQLite database: sha256, size, mode, owner, inode, mtime) and
   AIDE 0.18 (Debian's package, fetched with `apt-get download` and unpacked with `dpkg -x`,
   nothing installed) with `aide --init` on the same tree and the attributes
   p+i+n+u+g+s+m+c+sha256. Then a rescan of the unchanged tree: arguard's scan (which
   rereads only files whose size, times, inode or device changed) and `aide --check`
   (which hashes every file again).
3. Realtime latency: a real `arguard run` (pinned to --core) watches the large tree and a
   small one (50 files) in two [[integrity]] tables. Its first start records both baselines
   (time to READY and the daemon's peak RSS are reported). The benchmark (on another core)
   then writes --writes times, alternating between the two trees, --rate writes/s, each write
   new content into one file (round robin, so no file is written twice within a second),
   taking CLOCK_MONOTONIC just before the write(2); a reader thread tails alerts.json (every
   0.5 ms) and takes CLOCK_MONOTONIC when the rule-550 alert with that content's sha256
   appears. Latency = the difference: write → inotify → 40 ms debounce → check and hash →
   rule engine → alerts.json. p50/p99/max per tree, in the same run, and how many were missed.
4. Restore: a second daemon with restore-file bound to 550 (keep_copies) on 20 files; the
   benchmark tampers a file (new content and mode 0666) --restores times, 150 ms apart, and
   polls it (every 0.5 ms) until its known-good content and mode 0640 are back: p50/p99/max.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"
PER_DIRECTORY = 100
SMALL_FILES = 50
RESTORE_FILES = 20
CONFIG = """\
[paths]
state_dir = "state"
log_dir = "log"
run_dir = "run"
decoders_d = "decoders.d"
rules_d = "rules.d"
ar_bin_dir = "bin"
"""
SCAN = textwrap.dedent("""\
    import sys, time
    from arguard.config import Integrity
    from arguard.integrity.baseline import Baseline, Roots
    from arguard.store import Store
    tree, database = sys.argv[1], sys.argv[2]
    roots = Roots([Integrity(paths=(tree,))])
    root = next(iter(roots))
    baseline = Baseline(Store(database), roots, None)
    started = time.perf_counter()
    for changes in baseline.scan(root):
        assert not changes
    print(f"{time.perf_counter() - started:.3f}")
    """)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(round(q / 100 * (len(ordered) - 1))), len(ordered) - 1)]


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 50):7.1f} ms   p99 {percentile(values, 99):7.1f} ms   "
            f"max {max(values):7.1f} ms   ({len(values)} samples)")


def make_tree(root: Path, files: int) -> int:
    """`files` files, PER_DIRECTORY a directory; their total size."""
    total = 0
    for n in range(files):
        directory = root / f"d{n // (PER_DIRECTORY * 100):03d}" / f"e{n // PER_DIRECTORY:05d}"
        if n % PER_DIRECTORY == 0:
            directory.mkdir(parents=True)
        size = 65536 if n % 100 == 99 else 64 + (n * 7919) % 4032
        data = (f"{n:08d} " * (size // 9 + 1)).encode()[:size]
        (directory / f"f{n % PER_DIRECTORY:03d}.conf").write_bytes(data)
        total += size
    return total


def timed(argv: list[str], core: int, env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS KiB, stdout) of one pinned run under GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        result = subprocess.run([TIME, "-f", "%M", "-o", report.name, "taskset", "-c",
                                 str(core), *argv], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if result.returncode not in (0, 1, 7):  # aide --check: 1-7 say what changed
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr}")
        rss = int(report.read().split()[-1])
    return wall, rss, result.stdout


def fetch_aide(directory: Path) -> tuple[list[str], dict] | None:
    """AIDE from Debian's package (and libmhash), unpacked into `directory`; None if not
    available."""
    directory.mkdir()
    try:
        for package in ("aide", "libmhash2"):
            subprocess.run(["apt-get", "download", "-qq", package], cwd=directory, check=True,
                           capture_output=True, timeout=120)
        for deb in directory.glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(directory / "root")], check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"AIDE not available ({exc}); --no-aide skips it")
        return None
    root = directory / "root"
    env = {**os.environ, "LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu")}
    return [str(root / "usr/bin/aide")], env


def bench_baseline(args, work: Path, tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    database = work / "scan.db"
    first, first_rss, out = timed([sys.executable, "-c", SCAN, str(tree), str(database)],
                                  args.core, env)
    second, second_rss, out2 = timed([sys.executable, "-c", SCAN, str(tree), str(database)],
                                     args.core, env)
    print(f"  arguard   baseline {first:6.2f} s wall ({float(out):6.2f} s scanning), peak RSS "
          f"{first_rss / 1024:6.1f} MB;  rescan {second:6.2f} s ({float(out2):6.2f} s), "
          f"peak RSS {second_rss / 1024:6.1f} MB")
    if args.no_aide:
        return
    aide = fetch_aide(work / "aide")
    if aide is None:
        return
    command, aide_env = aide
    conf = work / "aide.conf"
    conf.write_text(f"database_in=file:{work}/aide.db\ndatabase_out=file:{work}/aide.db.new\n"
                    f"gzip_dbout=no\nFIM = p+i+n+u+g+s+m+c+sha256\n{tree} FIM\n")
    init, init_rss, _ = timed([*command, "--init", "-c", str(conf)], args.core, aide_env)
    os.replace(work / "aide.db.new", work / "aide.db")
    check, check_rss, _ = timed([*command, "--check", "-c", str(conf)], args.core, aide_env)
    print(f"  AIDE 0.18 --init   {init:6.2f} s wall, peak RSS {init_rss / 1024:6.1f} MB;  "
          f"--check {check:6.2f} s, peak RSS {check_rss / 1024:6.1f} MB")
    print(f"  ratio arguard/AIDE: baseline time {first / init:.2f}x, RSS "
          f"{first_rss / init_rss:.2f}x; rescan time {second / check:.2f}x")


class Daemon:
    """`arguard run` pinned to a core, READY read from systemd's notify protocol."""

    def __init__(self, directory: Path, core: int):
        self.directory = directory
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(directory / "notify.sock"))
        self.notify.settimeout(1.0)
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "NOTIFY_SOCKET": str(directory / "notify.sock")}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            ["taskset", "-c", str(core), sys.executable, "-m", "arguard.cli", "run", "-c",
             str(directory / "arguard.toml")], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(directory / "daemon.stderr", "w"))

    def wait_ready(self, deadline: float = 600.0) -> float:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                if "READY=1" in self.notify.recv(4096).decode().split("\n"):
                    return time.perf_counter() - self.started
            except TimeoutError:
                if self.process.poll() is not None:
                    break
        raise RuntimeError("the daemon did not start: "
                           + (self.directory / "daemon.stderr").read_text()[-2000:])

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB of the daemon itself (the Python process under taskset)."""
        pid = int(subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                                 text=True).stdout.split()[0]) \
            if Path(f"/proc/{self.process.pid}/exe").resolve().name == "taskset" \
            else self.process.pid
        values = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.notify.close()


class AlertTail(threading.Thread):
    """Notes when each rule-550 alert appears in alerts.json, by its sha256_after."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.seen: dict[str, int] = {}
        self.stopping = False

    def run(self) -> None:
        while not self.path.exists():
            time.sleep(0.0005)
        with open(self.path, "rb") as handle:
            pending = b""
            while not self.stopping:
                chunk = handle.read()
                if not chunk:
                    time.sleep(0.0005)
                    continue
                now = time.monotonic_ns()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    alert = json.loads(line)
                    if alert["rule"]["id"] == "550":
                        self.seen.setdefault(alert["syscheck"]["sha256_after"], now)


def write_config(directory: Path, body: str) -> None:
    for name in ("state", "log", "run", "decoders.d", "rules.d", "bin"):
        (directory / name).mkdir(exist_ok=True)
    (directory / "arguard.toml").write_text(CONFIG + textwrap.dedent(body))


def bench_realtime(args, work: Path, tree: Path) -> None:
    small = work / "small"
    make_tree(small, SMALL_FILES)
    directory = work / "daemon"
    directory.mkdir()
    write_config(directory, f"""
        [[integrity]]
        paths = ["{tree}"]
        scan_interval = "1d"
        max_eps = 1000

        [[integrity]]
        paths = ["{small}"]
        scan_interval = "1d"
        max_eps = 1000
        """)
    daemon = Daemon(directory, args.core)
    ready = daemon.wait_ready()
    rss, hwm = daemon.memory()
    print(f"  daemon start with both baselines to record: READY after {ready:.2f} s; RSS "
          f"{rss:.1f} MB, peak {hwm:.1f} MB")
    big_files = sorted(tree.rglob("*.conf"))[::max(1, args.files // 1000)]
    small_files = sorted(small.rglob("*.conf"))
    tail = AlertTail(directory / "log" / "alerts.json")
    tail.start()
    written: dict[str, tuple[str, int]] = {}
    step = 1.0 / args.rate
    start = time.monotonic()
    for n in range(args.writes):
        which, files = ("100k", big_files) if n % 2 == 0 else ("small", small_files)
        path = files[(n // 2) % len(files)]
        data = f"write {n}\n".encode()
        due = start + n * step
        while time.monotonic() < due:
            time.sleep(min(0.001, max(0.0, due - time.monotonic())))
        digest = hashlib.sha256(data).hexdigest()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        written[digest] = (which, time.monotonic_ns())
        os.write(fd, data)
        os.close(fd)
    deadline = time.monotonic() + 30
    while len(tail.seen) < len(written) and time.monotonic() < deadline:
        time.sleep(0.01)
    tail.stopping = True
    rss_after, hwm_after = daemon.memory()
    daemon.stop()
    for which in ("100k", "small"):
        latencies = [(tail.seen[d] - t) / 1e6 for d, (w, t) in written.items()
                     if w == which and d in tail.seen]
        missed = sum(1 for d, (w, _) in written.items() if w == which and d not in tail.seen)
        label = f"{args.files:,} files" if which == "100k" else f"{SMALL_FILES} files"
        print(f"  change → rule 550 in alerts.json, tree of {label:>14}: {summary(latencies)}"
              f", missed {missed}")
    print(f"  daemon after the writes: RSS {rss_after:.1f} MB, peak {hwm_after:.1f} MB")


def bench_restore(args, work: Path) -> None:
    tree = work / "restore"
    tree.mkdir()
    good = {}
    for n in range(RESTORE_FILES):
        path = tree / f"site{n:02d}.conf"
        good[path] = f"server {{ listen {8000 + n}; }}\n".encode()
        path.write_bytes(good[path])
        path.chmod(0o640)
    directory = work / "restorer"
    directory.mkdir()
    write_config(directory, f"""
        [[integrity]]
        paths = ["{tree}"]
        keep_copies = "1MB"
        max_eps = 1000

        [[command]]
        name = "restore"
        action = "restore-file"

        [[active_response]]
        command = "restore"
        rules_id = [550]
        """)
    daemon = Daemon(directory, args.core)
    daemon.wait_ready()
    latencies, failed = [], 0
    paths = sorted(good)
    for n in range(args.restores):
        path = paths[n % len(paths)]
        started = time.monotonic_ns()
        path.write_bytes(b"tampered %d\n" % n)
        path.chmod(0o666)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                if (path.stat().st_mode & 0o777) == 0o640 and path.read_bytes() == good[path]:
                    latencies.append((time.monotonic_ns() - started) / 1e6)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.0005)
        else:
            failed += 1
        time.sleep(0.15)
    daemon.stop()
    print(f"  tamper (write + chmod) → known-good content and mode back: {summary(latencies)}"
          f", not restored {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--restores", type=int, default=200)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--no-aide", action="store_true")
    args = parser.parse_args()
    others = sorted(set(os.sched_getaffinity(0)) - {args.core})
    if others:
        os.sched_setaffinity(0, others)  # the writer and the alert reader: not on the daemon's
    for tool in ("taskset", TIME):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    print(f"bench_integrity: Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cores; daemon and scans pinned to core {args.core}, the writer "
          f"and the alert reader to {sorted(os.sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as name:
        work = Path(name)
        started = time.perf_counter()
        size = make_tree(work / "tree", args.files)
        print(f"tree: {args.files:,} files, {size / 1e6:.1f} MB, {PER_DIRECTORY} per directory "
              f"(written in {time.perf_counter() - started:.1f} s)")
        print("baseline scan (pinned, GNU time):")
        bench_baseline(args, work, work / "tree")
        print(f"realtime ({args.writes} writes at {args.rate:g}/s, half in each tree):")
        bench_realtime(args, work, work / "tree")
        print(f"restore-file ({args.restores} tamperings, {RESTORE_FILES} files):")
        bench_restore(args, work)


if __name__ == "__main__":
    main()
