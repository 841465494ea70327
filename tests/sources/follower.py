"""A stand-in for the daemon in tests: runs a SourceManager on a real config and store and
appends every delivered line to an output file (fsynced before deliver returns), each batch
followed by a `#batch` line. SIGTERM stops it cleanly; the status is written at exit.

    python -m tests.sources.follower CONFIG OUTPUT
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from arguard.config import load_config
from arguard.sources.manager import SourceManager
from arguard.store import Store


async def follow(config_path: Path, output: Path) -> None:
    config = load_config(config_path)
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
    asyncio.run(follow(Path(sys.argv[1]), Path(sys.argv[2])))


if __name__ == "__main__":
    main()
