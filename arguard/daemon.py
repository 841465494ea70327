"""`arguard run`: one asyncio loop wiring sources → pipeline → responder (DESIGN.md §1).

The sources deliver batches of lines on the loop; each batch goes through the pipeline, its
alerts are appended to alerts.json and its responses applied (native actions inline, scripts
and webhooks in worker threads) before `deliver` returns, which is when the sources commit
their offsets: a crash never loses the response to a line that counts as read.

Around that: the scheduler lifts blocks on time, the control socket answers the CLI, SIGHUP /
`arguard reload` / a changed config or rule file re-read everything and switch only when it is
all valid, SIGTERM/SIGINT stop cleanly, and systemd hears READY, STATUS, WATCHDOG and STOPPING.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from arguard import __version__, control, lastgood, sdnotify
from arguard.alerts import AlertLog
from arguard.config import Config, load_config
from arguard.decode.predecode import Predecoder
from arguard.errors import ConfigError
from arguard.model import Event, Line, Response
from arguard.pipeline import Outcome, Pipeline
from arguard.respond.actions import ActionError, host_notes
from arguard.respond.owner import claim_namespace
from arguard.respond.responder import Reconciled
from arguard.respond.stage import build_respond_stage
from arguard.respond.targets import TargetKind
from arguard.ruleset.files import Ruleset, load_ruleset
from arguard.sources.manager import SourceManager
from arguard.sources.recent import RecentWindow
from arguard.status import blocks_section
from arguard.storage import StorageError, correct_file_modes, open_database, prepare_directories
from arguard.store import Recovery, Store, read_active_blocks

if TYPE_CHECKING:
    from arguard.metrics import Metrics

log = logging.getLogger(__name__)

#: seconds between two looks at the config and rule files
WATCH_INTERVAL = 2.0
#: seconds between two STATUS= updates to systemd
STATUS_INTERVAL = 10.0
#: shortest interval over which a source's lines/s is measured
RATE_WINDOW = 5.0
#: seconds the sources get to flush their offsets when stopping
STOP_TIMEOUT = 3.0


class Daemon:
    def __init__(self, config_path: Path | None, config: Config, ruleset: Ruleset,
                 store: Store, dry_run: bool = False, recovery: Recovery | None = None):
        """`store`: the database (the dry run's own in a dry run: its read positions and
        would-be blocks, never reconciled into the kernel by a later real run);
        `recovery`: how it replaced a damaged one, at this start or at one that stopped
        before the backends' blocks were adopted."""
        self.config_path = config_path
        self.config = config
        self.dry_run = dry_run
        self.recovery = recovery
        self.started = time.time()
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self.respond = build_respond_stage(config, self.store, dry_run=dry_run,
                                           backend_reset=self._backend_reset)
        self.responder = self.respond.responder
        self.fleet = self.correlation = None
        if config.fleet is not None and not dry_run:
            self._join_fleet(config)
        self.pipeline = Pipeline(ruleset, line_time=False, decide=self.respond.policy.decide,
                                 store=self.store, prefilter=True, shared=self.correlation)
        _log_detection(self.pipeline)
        self.alert_log = AlertLog(config.paths.alerts_log)
        self.recent = recent_window(ruleset)
        self.sources = self._source_manager(config)
        self.lines = 0
        self.alerts = 0
        self.line_errors = 0
        self.rule_counts: Counter[int] = Counter()
        self.last_reload: dict[str, Any] = {"at": None, "error": None}
        #: "ok" / "refused" → how many reloads (metrics)
        self.reloads: Counter[str] = Counter()
        self.metrics: Metrics | None = None
        self._watched = self._watched_files()
        self._stopping = asyncio.Event()
        self._exit_code = 0
        self._background: set[asyncio.Task] = set()
        self._sources_task: asyncio.Task | None = None
        self._reload_lock = asyncio.Lock()
        self._rate_samples: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    def _join_fleet(self, config: Config) -> None:
        """The fleet link (arguard.fleet), its inbox and the fleet-scoped correlation; psycopg
        is only imported on a host with [fleet]."""
        from arguard.fleet.facts import SharedCorrelation
        from arguard.fleet.inbox import Inbox
        from arguard.fleet.link import FleetLink

        assert config.fleet is not None
        self.correlation = SharedCorrelation(config.fleet.name, lambda: self.pipeline.engine)
        self.fleet = FleetLink(config.fleet, self.store, Inbox(self.respond, config.fleet.name),
                               self.correlation)
        self.respond.on_shared = self.fleet.wake

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        claim = None if self.dry_run else claim_namespace(self.respond.owner)
        try:
            reconciled = self.responder.reconcile(adopt=self.recovery is not None)
        except BaseException:
            if claim is not None:
                claim.close()
            raise
        if self.recovery is not None:
            self._report_recovery(reconciled)
        self._keep_config(self.config)
        server = await control.serve(self.config.paths.control_socket, self.handle)
        if self.config.metrics.enabled:
            from arguard.metrics import Metrics

            self.metrics = Metrics(self, self.config.metrics)
            self.responder.timed = self.metrics.observe
            await self.metrics.start()
        core = [loop.create_task(self.respond.scheduler.run(), name="expiry"),
                loop.create_task(self._watch_files(), name="config watch"),
                loop.create_task(self._report_status(), name="status")]
        if sdnotify.watchdog_interval() is not None:
            core.append(loop.create_task(self._watchdog(), name="watchdog"))
        if self.fleet is not None:
            core.append(loop.create_task(self.fleet.run(), name="fleet"))
        elif self.config.fleet is not None:
            log.info("dry run: this host does not join the fleet (nothing is shared or "
                     "received)")
        for task in core:
            task.add_done_callback(self._core_task_done)
        await self._start_sources()
        log.info("arguard %s running%s: %d sources, %d active blocks (reconciled: %s), "
                 "control socket %s", __version__, " in dry-run mode" if self.dry_run else "",
                 len(self.config.sources), self.responder.active_count, reconciled.counts(),
                 self.config.paths.control_socket)
        sdnotify.notify("READY=1\nSTATUS=" + self._status_line())
        await self._stopping.wait()

        sdnotify.notify("STOPPING=1")
        log.info("stopping")
        server.close()
        await self._stop_sources()
        for task in core + list(self._background):
            task.cancel()
        await asyncio.gather(*core, *self._background, return_exceptions=True)
        self.responder.on_exit()
        if self.metrics is not None:
            await self.metrics.stop()
        if claim is not None:
            claim.close()
        self.alert_log.close()
        self.responder.reopen_log()
        with contextlib.suppress(FileNotFoundError):
            self.config.paths.control_socket.unlink()
        log.info("stopped")
        return self._exit_code

    def stop(self) -> None:
        self._stopping.set()

    def _report_recovery(self, reconciled: Reconciled) -> None:
        adopted = len(reconciled.adopted)
        self.recovery = replace(self.recovery, adopted=adopted)
        with contextlib.suppress(sqlite3.Error):
            self.store.record_adopted(adopted)
        log.error("started on a fresh database (the damaged one is kept as %s): %d blocks "
                  "recovered from it, %d adopted from the backends (held there for owner %s), "
                  "%d read positions recovered; files without one are read back over the "
                  "last %d s", self.recovery.moved_to, self.recovery.blocks, adopted,
                  self.respond.owner.label, self.recovery.offsets, self.recent.seconds)

    def _keep_config(self, config: Config) -> None:
        """The configuration now running, as the operator's commands' fallback
        (arguard.lastgood)."""
        owner = None if self.dry_run else self.respond.owner.tag
        try:
            lastgood.save(config, self.config.paths, owner, time.time())
        except OSError as error:
            log.warning("cannot keep a copy of the configuration in %s: %s",
                        self.config.paths.state_dir, error.strerror or error)

    def _core_task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._stopping.is_set():
            return
        error = task.exception()
        log.critical("%s task ended unexpectedly: %r; stopping", task.get_name(), error)
        self._exit_code = 1
        self.stop()

    # --- sources → pipeline → responder -----------------------------------------------------

    def _source_manager(self, config: Config) -> SourceManager:
        paths = config.paths
        return SourceManager(list(config.sources), self.store, self.deliver,
                             integrity=config.integrity, deliver_events=self.deliver_events,
                             copies=None if self.dry_run else paths.integrity_copies,
                             own_directories=paths.own_directories, recent=self.recent)

    async def _start_sources(self) -> None:
        """Start following and wait until every source is placed (files opened at their
        saved offsets or at their end), so that a line written after READY is never taken
        for old content."""
        self._sources_task = asyncio.get_running_loop().create_task(
            self.sources.run(), name="sources")
        self._sources_task.add_done_callback(self._core_task_done)
        started = asyncio.get_running_loop().create_task(self.sources.started.wait())
        await asyncio.wait([started, self._sources_task], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()

    async def _stop_sources(self) -> None:
        try:
            await asyncio.wait_for(self.sources.stop(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("sources did not stop within %.0f s; offsets of the last batch may "
                      "be read again", STOP_TIMEOUT)
        if self._sources_task is not None:
            self._sources_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sources_task
            self._sources_task = None

    def deliver(self, lines: list[Line]) -> None:
        """One batch of lines from a source: decode, match, write alerts, apply responses."""
        pipeline = self.pipeline
        responses: list[Response] = []
        undecoded: Counter[str] = Counter()
        ambiguous: Counter[str] = Counter()
        candidates = pipeline.candidates(lines)
        for index, line in enumerate(lines):
            if candidates is not None and not candidates[index]:
                undecoded[line.location] += 1  # no decoder or rule can take it
                continue
            try:
                outcome = pipeline.process(line)
            except Exception:  # a line must never take the daemon down
                self.line_errors += 1
                log.exception("line from %s could not be processed; skipped", line.location)
                continue
            if outcome.event.decoder is None:
                undecoded[line.location] += 1
            elif outcome.event.ambiguous:
                ambiguous[line.location] += 1
            responses.extend(self._alerted(outcome))
        self.lines += len(lines)
        self.alert_log.flush()
        for location in undecoded.keys() | ambiguous.keys():
            self.sources.count_decoding(location, undecoded[location], ambiguous[location])
        if responses:
            self._respond(responses)

    def deliver_events(self, events: list[Event]) -> None:
        """One batch of file integrity events (decoded by their source): match, write
        alerts, apply responses."""
        responses: list[Response] = []
        for event in events:
            try:
                outcome = self.pipeline.process_event(event)
            except Exception:  # an event must never take the daemon down
                self.line_errors += 1
                log.exception("file integrity event for %s could not be processed; skipped",
                              event.fields.get("file"))
                continue
            responses.extend(self._alerted(outcome))
        self.alert_log.flush()
        if responses:
            self._respond(responses)

    def _alerted(self, outcome: Outcome) -> list[Response]:
        """Count and write an outcome's alert; the responses it calls for."""
        alert = outcome.alert
        if alert is None:
            return []
        self.alerts += 1
        self.rule_counts[alert.rule.id] += 1
        self.alert_log.write(alert)
        return outcome.responses

    def _respond(self, responses: list[Response]) -> None:
        """Inline actions before `deliver` returns; detached and stateless ones (their action
        says) in the background — with them whatever an alert asks for after its first such
        response, so that one alert's responses keep their order (lock, then terminate).
        Those the fleet shares go to its outbox first."""
        self.respond.share(responses)
        responses = self.respond.here(responses)
        inline: list[Response] = []
        detached: list[Response] = []
        backgrounded: set[int] = set()
        for response in responses:
            if self.responder.detached(response.command):
                backgrounded.add(id(response.alert))
            (detached if id(response.alert) in backgrounded else inline).append(response)
        if inline:
            self.responder.apply(inline)
        if detached:
            self._in_background(self.responder.apply_async(detached), "responses")

    def _backend_reset(self, command: str, why: str) -> None:
        """An action's backend dropped its entries by itself (from any thread): reconcile
        that command on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reconcile_command, command, why)

    def _reconcile_command(self, command: str, why: str) -> None:
        log.info("command %s: %s; putting its blocks back", command, why)
        try:
            reconciled = self.responder.reconcile([command])
        except ActionError as error:
            log.error("command %s: cannot reconcile after %s: %s", command, why, error)
            return
        log.info("command %s reconciled: %s", command, reconciled.counts())

    def _in_background(self, work: Coroutine, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %r", task.get_name(), task.exception())

    # --- reload -----------------------------------------------------------------------------

    async def reload(self, reason: str) -> dict[str, Any]:
        """Re-read config, decoders and rules; switch only when all of it is valid."""
        async with self._reload_lock:
            self._watched = self._watched_files()
            try:
                config = load_config(self.config_path)
                ruleset = load_ruleset(config)
            except ConfigError as error:
                message = "\n".join(str(p) for p in error.problems)
                self.last_reload = {"at": time.time(), "error": message}
                self.reloads["refused"] += 1
                for problem in error.problems:
                    log.error("reload (%s) refused, old configuration kept: %s", reason, problem)
                return {"ok": False, "error": message}
            except OSError as error:
                message = f"{error.filename or self.config_path}: {error.strerror or error}"
                self.last_reload = {"at": time.time(), "error": message}
                self.reloads["refused"] += 1
                log.error("reload (%s) refused, old configuration kept: %s", reason, message)
                return {"ok": False, "error": message}
            notes = []
            if config.paths != self.config.paths:
                notes.append("[paths] changed: takes effect at the next restart")
                config = replace(config, paths=self.config.paths)
            if config.fleet != self.config.fleet:
                notes.append("[fleet] changed: takes effect at the next restart")
                config = replace(config, fleet=self.config.fleet)
            if config.metrics != self.config.metrics:
                notes.append("[metrics] changed: takes effect at the next restart")
                config = replace(config, metrics=self.config.metrics)
            old = self.config
            self.config = config
            self.recent = recent_window(ruleset)
            self._keep_config(config)
            self.respond.reconfigure(config)
            pipeline = Pipeline(ruleset, line_time=False, decide=self.respond.policy.decide,
                                store=self.store, prefilter=True, shared=self.correlation)
            _log_detection(pipeline)
            pipeline.adopt_state(self.pipeline)
            self.pipeline = pipeline
            if (config.sources, config.integrity) != (old.sources, old.integrity):
                await self._stop_sources()
                self.sources = self._source_manager(config)
                await self._start_sources()
            self._watched = self._watched_files()
            self.last_reload = {"at": time.time(), "error": None}
            self.reloads["ok"] += 1
            log.info("reloaded (%s): %d decoders, %d rules, %d sources%s", reason,
                     len(ruleset.decoders), len(ruleset.rules.rules), len(config.sources),
                     "".join("; " + n for n in notes))
            return {"ok": True, "decoders": len(ruleset.decoders),
                    "rules": len(ruleset.rules.rules), "notes": notes}

    def _on_sighup(self) -> None:
        self.alert_log.reopen()
        self.responder.reopen_log()
        self._in_background(self.reload("SIGHUP"), "reload")

    def _watched_files(self) -> dict[Path, tuple[int, int, int]]:
        """mtime, size and inode of the config file and every drop-in file. Polled rather
        than watched through inotify: a handful of files, and a poll also sees editors'
        rename-into-place saves and directories created later."""
        paths: list[Path] = []
        if self.config_path is not None:
            paths.append(self.config_path)
        for directory in (self.config.paths.decoders_d, self.config.paths.rules_d):
            with contextlib.suppress(OSError):
                paths.extend(sorted(directory.glob("*.toml")))
        paths.extend(self.pipeline.engine.tree.list_files)
        signature = {}
        for path in paths:
            with contextlib.suppress(OSError):
                info = path.stat()
                signature[path] = (info.st_mtime_ns, info.st_size, info.st_ino)
        return signature

    async def _watch_files(self) -> None:
        settled = self._watched
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            current = self._watched_files()
            if current == self._watched:
                settled = current
                continue
            if current != settled:  # still changing: wait for one quiet interval
                settled = current
                continue
            await self.reload("configuration files changed")

    # --- control socket ------------------------------------------------------------------

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "status":
            return {"ok": True, "status": self.status()}
        if op == "list":
            return {"ok": True, "blocks": blocks_section(self.store.active_blocks(),
                                                         time.time())}
        if op == "reload":
            return await self.reload("control socket")
        if op == "block":
            target, command, timeout, kind = _block_arguments(request)
            return control.block_reply(await self.respond.block_async(target, command, timeout,
                                                                      kind))
        if op == "unblock" and request.get("all") is True:
            command = request.get("command")
            if command is not None and not isinstance(command, str):
                raise ValueError("'command' must be a string")
            return control.unblock_reply(await self.respond.unblock_async(None, command), None)
        if op == "unblock":
            target, command, _, kind = _block_arguments(request)
            return control.unblock_reply(await self.respond.unblock_async(target, command,
                                                                          kind),
                                         control.no_block_message(target, command))
        if op in ("integrity-accept", "integrity-scan"):
            return await self._integrity_request(op, request)
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _integrity_request(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        integrity = self.sources.integrity
        if integrity is None:
            return {"ok": False, "error": "no [[integrity]] table is configured"}
        if op == "integrity-scan":
            return {"ok": True, "paths": await integrity.scan_now()}
        path = request.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ValueError("'path' must be an absolute path")
        return control.accept_reply(await integrity.accept(path))

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "running": True, "pid": os.getpid(), "version": __version__,
            "started": self.started, "uptime": now - self.started,
            "config": None if self.config_path is None else str(self.config_path),
            "owner": None if self.dry_run else self.respond.owner.label,
            "backends": host_notes(self.config.commands.values()),
            "dry_run": self.dry_run, "lines": self.lines, "alerts": self.alerts,
            "line_errors": self.line_errors,
            "correlation_keys": self.pipeline.engine.correlation_keys(),
            "detection": self.pipeline.detection(),
            "sources": self._with_rates(self.sources.status(), now),
            "rules": {str(rule): count for rule, count in sorted(self.rule_counts.items())},
            **self._blocks(now),
            "storage": self._storage(),
            "responses": _response_counters(self.responder.counters),
            "failures": list(self.responder.log.recent_failures),
            "reload": self.last_reload,
            "fleet": None if self.fleet is None else self.fleet.status(),
            "metrics": None if self.metrics is None else self._metrics_status(),
            "integrity": None if self.sources.integrity is None
            else self.sources.integrity.status(),
        }

    def _metrics_status(self) -> dict[str, Any]:
        settings = self.config.metrics
        return {"listen": None if settings.listen is None else "%s:%d" % settings.listen,
                "textfile": None if settings.textfile is None else str(settings.textfile),
                "error": self.metrics.error if self.metrics is not None else None}

    def _blocks(self, now: float) -> dict[str, Any]:
        """The active blocks; in a dry run, the would-be blocks of its own database, and
        the blocks in place that the live database records."""
        own = blocks_section(self.store.active_blocks(), now)
        if not self.dry_run:
            return {"blocks": own}
        try:
            live = read_active_blocks(self.config.paths.database)
        except sqlite3.Error:
            live = []
        return {"blocks": blocks_section(live, now), "would_block": own}

    def _storage(self) -> dict[str, Any]:
        """Where the state is kept and what went wrong with it."""
        try:
            recoveries = [asdict(r) for r in self.store.recoveries()]
        except sqlite3.Error:
            recoveries = []
        return {
            "database": str(self.store.path), "recoveries": recoveries,
            "alerts_not_written": self.alert_log.fault.lost,
            "alerts_error": self.alert_log.fault.error,
            "response_lines_not_written": self.responder.log.fault.lost,
            "blocks_table_error": self.responder.table.error,
            "blocks_not_recorded": self.responder.unrecorded,
            "positions_error": self.sources.commit_error,
        }

    def _with_rates(self, sources: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """Add lines/s per source, over the time since the previous sample (at least
        RATE_WINDOW seconds ago, so that two quick `status` calls do not read zero)."""
        for source in sources:
            name, lines = source["source"], source["lines"]
            sample = self._rate_samples.get(name)
            if sample is None or now - sample[0] >= RATE_WINDOW:
                if sample is not None:
                    self._rates[name] = (lines - sample[1]) / (now - sample[0])
                self._rate_samples[name] = (now, lines)
            source["lines_per_second"] = self._rates.get(name, 0.0)
        return sources

    def _status_line(self) -> str:
        return (f"{len(self.config.sources)} sources, {self.lines} lines, {self.alerts} alerts, "
                f"{self.responder.active_count} active blocks")

    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            _return_free_memory()
            self._with_rates(self.sources.status(), time.time())  # fresh lines/s samples
            sdnotify.notify("STATUS=" + self._status_line())

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval() or 10.0
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def _log_detection(pipeline: Pipeline) -> None:
    if pipeline.prefilter is not None and pipeline.prefilter.disabled is not None:
        log.warning("detection: %s", pipeline.detection())
    else:
        log.info("detection: %s", pipeline.detection())


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc


def _return_free_memory() -> None:
    """Hand freed heap pages back to the kernel (glibc's malloc_trim): after a burst of lines
    the allocator keeps them, and an idle daemon should not sit on its peak."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _block_arguments(request: dict[str, Any]) -> tuple[str, str | None, int | None,
                                                      TargetKind]:
    target, command, timeout = request.get("target"), request.get("command"), \
        request.get("timeout")
    kind = request.get("kind", "ip")
    if kind not in ("ip", "user"):
        raise ValueError("'kind' must be \"ip\" or \"user\"")
    if not isinstance(target, str) or not target:
        raise ValueError("'target' must be a non-empty string")
    if command is not None and not isinstance(command, str):
        raise ValueError("'command' must be a string")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                or timeout <= 0):
        raise ValueError("'timeout' must be a positive whole number of seconds")
    return target, command, timeout, kind


def _response_counters(counters: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for (command, verb), count in sorted(counters.items()):
        result.setdefault(command, {})[verb] = count
    return result


def recent_window(ruleset: Ruleset) -> RecentWindow:
    """How far back a file never seen before is read (start_at = "recent"): the longest
    timeframe of the loaded correlation rules, by the lines' own timestamps."""
    longest = max((rule.timeframe for rule in ruleset.rules.rules.values()
                   if rule.frequency is not None), default=0)
    return RecentWindow(seconds=longest, line_time=Predecoder().line_time)


def run_daemon(config_path: Path | None, dry_run: bool) -> int:
    """Load everything (a bad config exits 1 before anything starts), make the state and
    log directories ready, take the state lock, open the database (replacing a damaged
    one), run the loop. StorageError: a one-line reason not to start."""
    from arguard.statelock import StateLock

    config = load_config(config_path)
    ruleset = load_ruleset(config)
    paths = config.paths
    prepare_directories(paths)
    lock = StateLock(paths.lock_file)
    lock.acquire()
    try:
        correct_file_modes(paths, [paths.database, paths.dry_run_database])
        kept = lastgood.read(paths.state_dir)
        store, recovery = open_database(paths.dry_run_database if dry_run else paths.database,
                                        owner_hint=None if kept is None else kept.owner_tag)
        try:
            recovery = recovery or store.unfinished_recovery()
            daemon = Daemon(config_path, config, ruleset, store, dry_run, recovery)
            try:
                daemon.alert_log.open()
            except OSError as error:
                raise StorageError(f"cannot write {paths.alerts_log}: "
                                   f"{error.strerror or error}") from None
            return asyncio.run(daemon.run())
        finally:
            store.close()
    finally:
        lock.release()
