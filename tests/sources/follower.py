"""A stand-in for the daemon in tests: runs a SourceManager on a real config and store and
appends every delivered line to an output file (fsynced before deliver returns), each batch
followed by a `#batch` line. SIGTERM stops it cleanly; the status is written at exit.

    python -m tests.sources.follower [--state-tmpfs SIZE] CONFIG OUTPUT

--state-tmpfs mounts a tmpfs of that size on the state directory first (for a disk-full
database; run it in a private mount namespace: `unshare --mount --propagation private`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

from arguard.config import load_config
from arguard.sources.manager import SourceManager
from arguard.store import Store


async def follow(config_path: Path, output: Path, state_tmpfs: str | None) -> None:
    config = load_config(config_path)
    if state_tmpfs is not None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={state_tmpfs}", "tmpfs",
                        str(config.paths.state_dir)], check=True)
    store = Store(config.paths.database)
    out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def deliver(lines):
        text = "".join(f"{line.location}\t{line.text}\n" for line in lines) + "#batch\n"
        os.write(out, text.encode("utf-8", errors="surrogateescape"))
        os.fsync(out)

    manager = SourceManager(list(config.sources), store, deliver)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(manager.stop()))
    runner = asyncio.ensure_future(manager.run())
    await manager.started.wait()
    Path(f"{output}.ready").write_text(str(os.getpid()))
    await runner
    Path(f"{output}.status").write_text(json.dumps(manager.status()))
    os.close(out)
    store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-tmpfs")
    parser.add_argument("config", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    asyncio.run(follow(args.config, args.output, args.state_tmpfs))


if __name__ == "__main__":
    main()
