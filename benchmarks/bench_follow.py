"""Following benchmark: latency from a line being appended to a log file to its event leaving
the rule engine, and sustained following across rotations.

    python benchmarks/bench_follow.py                      # latency: 10 000 lines at 1000/s
    python benchmarks/bench_follow.py --lines 10000 --rate 2000 [--poll]
    python benchmarks/bench_follow.py --sustained 60 --rate 50000 [--engine none|alerts]

How it runs: a SourceManager follows one file in a temp directory (real SQLite store, offsets
committed after every batch) and hands batches to a Pipeline with the shipped decoders and
rules (no responses: the time measured ends when the rule engine returns). A separate writer
process appends sshd "Invalid user" lines at a steady rate with one write(2) per line and
records CLOCK_MONOTONIC just before each write; the follower records CLOCK_MONOTONIC when
Pipeline.process returns for that line. Latency = the difference, per line.
--sustained: the writer appends at --rate for that many seconds and rotates the log twice
(rename + create); reports whether every line came through, the follower's throughput and
how far it fell behind (lag = latency of the line, and bytes not yet read when sampled).
--engine none measures the sources alone (deliver only counts lines); --engine alerts also
writes every alert to an alerts.json in the temp dir (flushed after each batch, as the daemon
does), so the time then ends when the alert is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguard.alerts import AlertLog  # noqa: E402
from arguard.config import Source, load_config  # noqa: E402
from arguard.pipeline import Pipeline  # noqa: E402
from arguard.ruleset.files import load_ruleset  # noqa: E402
from arguard.sources.manager import SourceManager  # noqa: E402
from arguard.store import Store  # noqa: E402

WRITER = textwrap.dedent("""\
    import json, os, sys, time
    path, count, rate, rotations, times_out = (sys.argv[1], int(sys.argv[2]),
                                               float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    rotate_at = {count * (k + 1) // (rotations + 1) for k in range(rotations)}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    stamps = [0] * count
    start = time.monotonic()
    step = 1.0 / rate
    clock = time.monotonic_ns
    for n in range(count):
        if n in rotate_at:
            generation = 1
            while os.path.exists(f"{path}.{generation}"):
                generation += 1
            for g in range(generation - 1, 0, -1):
                os.rename(f"{path}.{g}", f"{path}.{g + 1}")
            os.rename(path, path + ".1")
            os.close(fd)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        due = start + n * step
        delay = due - time.monotonic()
        if delay > 0.0002:
            time.sleep(delay - 0.0001)
        while time.monotonic() < due:
            pass
        line = (f"Nov 22 13:40:01 web1 sshd[{1000 + n % 50}]: Invalid user u{n} from "
                f"198.51.100.{n % 250 + 1} port {1024 + n % 60000}\\n").encode()
        stamps[n] = clock()
        os.write(fd, line)
    os.close(fd)
    with open(times_out, "w") as f:
        json.dump(stamps, f)
""")

CONFIG = """\
[paths]
state_dir = "state"
log_dir = "log"
run_dir = "run"
decoders_d = "decoders.d"
rules_d = "rules.d"
ar_bin_dir = "bin"

[ruleset]
shipped = true
"""


ENGINES = {"rules": "shipped decoders + rules", "none": "none (sources only)",
           "alerts": "shipped decoders + rules, every alert written to alerts.json"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(int(round(q / 100 * (len(ordered) - 1))), len(ordered) - 1)
    return ordered[index]


async def run(args: argparse.Namespace, directory: Path) -> dict:
    for name in ("state", "log", "run", "decoders.d", "rules.d", "bin"):
        (directory / name).mkdir()
    (directory / "arguard.toml").write_text(CONFIG)
    config = load_config(directory / "arguard.toml")
    pipeline = Pipeline(load_ruleset(config), line_time=False)
    log = directory / "auth.log"
    log.touch()
    count = args.lines if not args.sustained else int(args.rate * args.sustained)
    done_ns = [0] * count
    batches: list[int] = []
    alerts = 0
    clock = time.monotonic_ns
    process = pipeline.process
    alert_log = AlertLog(directory / "log" / "alerts.json")

    def deliver(lines):
        nonlocal alerts
        batches.append(len(lines))
        for line in lines:
            if args.engine != "none":
                alert = process(line).alert
                if alert is not None:
                    alerts += 1
                    if args.engine == "alerts":
                        alert_log.write(alert)
                        if line is lines[-1]:
                            alert_log.flush()
            text = line.text
            number = int(text[text.index(" user u") + 7:text.index(" from ")])
            done_ns[number] = clock()

    store = Store(directory / "state" / "arguard.db")
    manager = SourceManager([Source(path=str(log), poll=args.poll)], store, deliver)
    follower = asyncio.create_task(manager.run())
    await manager.started.wait()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    stamps_file = directory / "stamps.json"
    rotations = 2 if args.sustained else 0
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(log), str(count), str(args.rate), str(rotations),
        str(stamps_file))
    lag_samples = []
    while writer.returncode is None:
        try:
            await asyncio.wait_for(writer.wait(), 0.25)
        except TimeoutError:
            pass
        lag_samples.append(manager.status()[0]["lag_bytes"])
    deadline = time.monotonic() + 120
    while sum(batches) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    await manager.stop()
    await follower
    store.close()
    stamps = json.loads(stamps_file.read_text())
    latencies_ms = [(done - start) / 1e6 for start, done in zip(stamps, done_ns) if done]
    first, last = min(stamps), max(done_ns)
    return {"count": count, "delivered": sum(batches), "lost": done_ns.count(0),
            "latencies_ms": latencies_ms, "batches": batches, "alerts": alerts,
            "lag_bytes_max": max(lag_samples, default=0),
            "elapsed_s": (last - first) / 1e9,
            "cpu_s": (cpu_after.ru_utime - cpu_before.ru_utime
                      + cpu_after.ru_stime - cpu_before.ru_stime)}


def report(args: argparse.Namespace, result: dict) -> None:
    latencies = result["latencies_ms"]
    batches = result["batches"]
    mode = (f"sustained {args.sustained:g} s at {args.rate:g} lines/s, 2 rotations"
            if args.sustained else f"{args.lines} lines at a steady {args.rate:g} lines/s")
    print(f"bench_follow: {mode}")
    print(f"  machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"  watcher: {'watchdog PollingObserver (poll = true)' if args.poll else 'inotify'}"
          f"; engine: {ENGINES[args.engine]}")
    print(f"  lines: written {result['count']}, delivered {result['delivered']}, "
          f"lost {result['lost']}, alerts {result['alerts']}")
    print(f"  follower CPU (all its threads, watchdog's included): {result['cpu_s']:.1f} s, "
          f"{1e6 * result['cpu_s'] / max(result['delivered'], 1):.1f} us per line")
    print(f"  batches: {len(batches)} (mean {statistics.mean(batches):.1f} lines, "
          f"max {max(batches)})")
    if latencies:
        print("  latency append -> rule engine done (ms): "
              f"p50 {percentile(latencies, 50):.3f}  p90 {percentile(latencies, 90):.3f}  "
              f"p99 {percentile(latencies, 99):.3f}  p99.9 {percentile(latencies, 99.9):.3f}  "
              f"max {max(latencies):.3f}  mean {statistics.mean(latencies):.3f}")
    if args.sustained:
        print(f"  throughput: {result['delivered'] / result['elapsed_s']:,.0f} lines/s over "
              f"{result['elapsed_s']:.1f} s; max lag {max(latencies) / 1000:.3f} s, "
              f"max unread bytes sampled {result['lag_bytes_max']:,}")
        kept_up = result["lost"] == 0 and max(latencies) < 1000
        print(f"  target (nothing lost, lag < 1 s): {'met' if kept_up else 'NOT met'}")
    if not args.sustained:
        verdict = "met" if percentile(latencies, 99) <= 10 else "NOT met"
        note = " (polling: bounded by the 0.5 s poll interval)" if args.poll else ""
        print(f"  target p99 <= 10 ms: {verdict}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="lines per second")
    parser.add_argument("--sustained", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--poll", action="store_true", help="poll instead of inotify")
    parser.add_argument("--engine", choices=tuple(ENGINES), default="rules")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as directory:
        result = asyncio.run(run(args, Path(directory)))
    report(args, result)


if __name__ == "__main__":
    main()
