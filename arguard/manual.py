"""Operator requests (`status`, `block`, `unblock`, `reload`, `integrity accept`): through the
running daemon's control socket, or — for status, block, unblock and integrity accept —
directly on SQLite and the backends when no daemon runs, holding the state lock so that a
daemon starting meanwhile waits for us."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from arguard import control
from arguard.config import Config
from arguard.integrity.baseline import Baseline, Roots
from arguard.integrity.copies import Copies
from arguard.respond.actions import host_notes
from arguard.respond.stage import RespondStage, build_respond_stage
from arguard.respond.targets import TargetKind
from arguard.statelock import StateLock, StateLocked
from arguard.status import blocks_section, integrity_section
from arguard.store import Store, read_active_blocks, read_recoveries


@dataclass(frozen=True, slots=True)
class DaemonDown:
    """No daemon answers; `reason` says why, as the operator should read it."""

    reason: str


def ask_daemon(config: Config, message: dict[str, Any],
               timeout: float = 10.0) -> dict[str, Any] | DaemonDown:
    socket_path = config.paths.control_socket
    try:
        return control.request(socket_path, message, timeout)
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
    """What the databases record while the daemon is down (read without writing to them,
    but for the integrity baseline): the blocks in place, the last dry run's would-be
    blocks, the recoveries."""
    paths = config.paths
    now = time.time()
    status: dict[str, Any] = {"running": False, "reason": reason, "config": config_path,
                              "database": str(paths.database),
                              "backends": host_notes(config.commands.values()),
                              "integrity": None}
    storage: dict[str, Any] = {"database": str(paths.database)}
    try:
        status["blocks"] = blocks_section(read_active_blocks(paths.database), now)
        storage["recoveries"] = [asdict(r) for r in read_recoveries(paths.database)]
        if config.integrity and paths.database.exists():
            store = Store(paths.database)
            try:
                status["integrity"] = integrity_section(Roots(config.integrity), store)
            finally:
                store.close()
    except sqlite3.Error as error:
        status["blocks"] = blocks_section([], now)
        storage["error"] = (f"{paths.database} cannot be read ({error}); the daemon "
                            "replaces a damaged database when it starts")
    try:
        would_block = read_active_blocks(paths.dry_run_database)
    except sqlite3.Error:
        would_block = []
    if would_block:
        status["would_block"] = blocks_section(would_block, now)
    status["storage"] = storage
    return status


def direct_block(config: Config, target: str, command: str | None, timeout: int | None,
                 kind: TargetKind = "ip") -> dict[str, Any]:
    with _direct(config) as stage:
        return control.block_reply(stage.block(target, command, timeout, kind))


def direct_unblock(config: Config, target: str | None, command: str | None,
                   kind: TargetKind = "ip") -> dict[str, Any]:
    """Lift `target`'s blocks, or with None every active block (of `command`, or of all)."""
    with _direct(config) as stage:
        return control.unblock_reply(stage.unblock(target, command, kind),
                                     None if target is None
                                     else control.no_block_message(target, command))


class _direct:
    """The respond stage on the real store and backends, under the state lock."""

    def __init__(self, config: Config):
        self.config = config
        self.locked = _locked_store(config)

    def __enter__(self) -> RespondStage:
        return build_respond_stage(self.config, self.locked.__enter__())

    def __exit__(self, *exc: object) -> None:
        self.locked.__exit__(*exc)


def direct_accept(config: Config, path: str) -> dict[str, Any]:
    """`arguard integrity accept` while the daemon is down: on SQLite and the copies
    directly."""
    with _locked_store(config) as store:
        baseline = Baseline(store, Roots(config.integrity, config.paths.own_directories),
                            Copies(config.paths.integrity_copies))
        return control.accept_reply(baseline.accept(os.fsencode(path)))


@contextmanager
def _locked_store(config: Config) -> Iterator[Store]:
    """The real store, under the state lock."""
    lock = StateLock(config.paths.lock_file)
    lock.acquire()
    try:
        store = Store(config.paths.database)
        try:
            yield store
        finally:
            store.close()
    finally:
        lock.release()
