"""Operator requests (`status`, `block`, `unblock`, `reload`): through the running daemon's
control socket, or — for status, block and unblock — directly on SQLite and the backends when
no daemon runs, holding the state lock so that a daemon starting meanwhile waits for us."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from arguard import control
from arguard.config import Config
from arguard.respond.stage import RespondStage, build_respond_stage
from arguard.statelock import StateLock, StateLocked
from arguard.status import blocks_section
from arguard.store import Store


@dataclass(frozen=True, slots=True)
class DaemonDown:
    """No daemon answers; `reason` says why, as the operator should read it."""

    reason: str


def ask_daemon(config: Config, message: dict[str, Any]) -> dict[str, Any] | DaemonDown:
    socket_path = config.paths.control_socket
    try:
        return control.request(socket_path, message)
    except control.ControlError as error:
        return DaemonDown(_why_down(config, str(error)))


def _why_down(config: Config, socket_problem: str) -> str:
    lock = StateLock(config.paths.lock_file)
    try:
        lock.acquire()
    except StateLocked as held:
        return f"{held}, but it does not answer: {socket_problem}"
    except OSError:
        return socket_problem
    lock.release()
    return socket_problem


def offline_status(config: Config, reason: str, config_path: str | None) -> dict[str, Any]:
    """What SQLite records while the daemon is down."""
    database = config.paths.database
    blocks = []
    if database.exists():
        store = Store(database)
        try:
            blocks = store.active_blocks()
        finally:
            store.close()
    return {"running": False, "reason": reason, "config": config_path,
            "database": str(database), "blocks": blocks_section(blocks, time.time())}


def direct_block(config: Config, target: str, command: str | None,
                 timeout: int | None) -> dict[str, Any]:
    with _direct(config) as stage:
        return control.block_reply(stage.block(target, command, timeout))


def direct_unblock(config: Config, target: str | None, command: str | None) -> dict[str, Any]:
    """Lift `target`'s blocks, or with None every active block (of `command`, or of all)."""
    with _direct(config) as stage:
        return control.unblock_reply(stage.unblock(target, command),
                                     None if target is None
                                     else control.no_block_message(target, command))


class _direct:
    """The respond stage on the real store and backends, under the state lock."""

    def __init__(self, config: Config):
        self.config = config
        self.lock = StateLock(config.paths.lock_file)

    def __enter__(self) -> RespondStage:
        self.lock.acquire()
        self.store = Store(self.config.paths.database)
        return build_respond_stage(self.config, self.store)

    def __exit__(self, *exc: object) -> None:
        self.store.close()
        self.lock.release()
