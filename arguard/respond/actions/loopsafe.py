"""Running pyroute2's synchronous API from the daemon's event-loop thread.

pyroute2 0.9 implements `IPRoute`/`IPSet` on top of asyncio and drives its own loop with
`run_until_complete`, which raises "This event loop is already running" in a thread whose
loop is running — the daemon's, where native actions run inline. Functions decorated here
run in one dedicated worker thread when called from such a thread (the caller waits: these
are sub-millisecond netlink round trips), and directly everywhere else.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")


def outside_event_loop(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return function(*args, **kwargs)
        return _worker.submit(function, *args, **kwargs).result()

    return call
