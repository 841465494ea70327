"""The daemon's Prometheus metrics (`[metrics]`): served over HTTP on the event loop and/or
written to a node_exporter textfile. docs/metrics.md lists them; packaging/
grafana-dashboard.json graphs them.

Nothing is counted here on the hot path: the counters the daemon keeps anyway (per source,
per rule, per command and outcome) are read when a scrape or a textfile write asks for
them, on the loop that changes them. Only the action latency histogram is observed as calls
happen (from worker threads too; prometheus_client's Histogram takes a lock).

The endpoint is a minimal HTTP/1.1 responder on asyncio (GET /metrics), so that collection
runs on the loop and never races it; prometheus_client renders the text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from arguard import __version__
from arguard.config import MetricsSettings

if TYPE_CHECKING:
    from arguard.daemon import Daemon

log = logging.getLogger(__name__)

#: seconds; native actions take well under a millisecond, scripts and webhooks seconds
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: a request larger than this, or slower than REQUEST_TIMEOUT, is dropped
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0

#: why a response was skipped, as a label: the reason's text starts with the key
SKIP_REASONS = (
    ("white-listed", "white_list"), ("covers white-listed", "white_list"),
    ("covers", "protected_address"), ("loopback", "protected_address"),
    ("own address", "protected_address"), ("unspecified address", "protected_address"),
    ("multicast", "protected_address"), ("broadcast", "protected_address"),
    ("scoped address", "invalid_target"), ("not an IP address", "invalid_target"),
    ("network, not an address", "invalid_target"),
    ("hostname, not an IP address", "invalid_target"), ("empty target", "invalid_target"),
    ("no ", "no_target"), ("cap of ", "max_blocks"), ("unknown command", "unknown_command"),
    ("no such command", "unknown_command"), ("not blocked", "not_blocked"),
)


def skip_reason(reason: str) -> str:
    """The label of a skip reason (`white_list`, `max_blocks`, …; user names and file names
    that cannot be targets are `invalid_target`)."""
    for start, label in SKIP_REASONS:
        if reason.startswith(start):
            return label
    if "user name" in reason or "file name" in reason or " path" in reason:
        return "invalid_target"
    return "other"


class Metrics:
    """The metrics of one daemon, and the endpoint and textfile that publish them."""

    def __init__(self, daemon: Daemon, settings: MetricsSettings):
        prometheus_client.disable_created_metrics()
        self.daemon = daemon
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_DaemonCollector(daemon))
        self.latency = Histogram(
            "arguard_action_seconds", "Time of each backend call of a response action",
            ["command", "call"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.Task | None = None
        self._textfile_failing = False
        #: why the endpoint is not served (status shows it)
        self.error: str | None = None

    def observe(self, command: str, call: str, seconds: float) -> None:
        self.latency.labels(command, call).observe(seconds)

    def text(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)

    async def start(self) -> None:
        listen = self.settings.listen
        if listen is not None:
            try:
                self._server = await asyncio.start_server(self._serve, *listen,
                                                          limit=MAX_REQUEST)
            except OSError as error:
                self.error = f"metrics endpoint {listen[0]}:{listen[1]}: {error.strerror}"
                log.error("%s; running without it", self.error)
            else:
                log.info("metrics on http://%s:%d/metrics", *listen)
        if self.settings.textfile is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write_textfile(),
                                                                  name="metrics textfile")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self.settings.textfile is not None:
            self.write_textfile()  # the final figures

    def write_textfile(self) -> None:
        path = self.settings.textfile
        assert path is not None
        try:
            prometheus_client.write_to_textfile(str(path), self.registry)
        except OSError as error:
            if not self._textfile_failing:  # once per failing stretch, not every interval
                log.error("metrics textfile %s: %s", path, error.strerror)
            self._textfile_failing = True
        else:
            self._textfile_failing = False

    async def _write_textfile(self) -> None:
        while True:
            self.write_textfile()
            await asyncio.sleep(self.settings.interval)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if not path.startswith("/"):
                status, body = "400 Bad Request", b"GET /metrics\n"
            elif method not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", b"GET /metrics\n"
            elif path not in ("/metrics", "/"):
                status, body = "404 Not Found", b"arguard serves /metrics\n"
            else:
                status, body = "200 OK", self.text()
            writer.write((f"HTTP/1.1 {status}\r\nContent-Type: "
                          f"{prometheus_client.CONTENT_TYPE_LATEST}\r\nContent-Length: "
                          f"{len(body)}\r\nConnection: close\r\n\r\n").encode())
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _DaemonCollector:
    """Reads the daemon's own counters at collection time."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        yield from _source_metrics(daemon)
        yield from _detection_metrics(daemon)
        yield from _response_metrics(daemon)
        yield from _daemon_metrics(daemon)


def _family(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str,
            documentation: str, labels: list[str],
            values: dict[tuple[str, ...], float]) -> Metric:
    family = kind(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _counter(name: str, documentation: str, labels: list[str],
             values: dict[tuple[str, ...], float]) -> Metric:
    return _family(CounterMetricFamily, name, documentation, labels, values)


def _gauge(name: str, documentation: str, labels: list[str],
           values: dict[tuple[str, ...], float]) -> Metric:
    return _family(GaugeMetricFamily, name, documentation, labels, values)


def _source_metrics(daemon: Daemon) -> Iterator[Metric]:
    counters = daemon.sources.counters
    labels = ["source", "kind"]

    def per_source(value) -> dict[tuple[str, ...], float]:
        return {(c.name, c.kind): value(c) for c in counters}

    yield _counter("arguard_lines_read", "Lines read (empty lines not counted)", labels,
                   per_source(lambda c: c.text.lines - c.text.empty))
    yield _counter("arguard_bytes_read", "Bytes read", labels, per_source(lambda c: c.bytes))
    yield _counter("arguard_lines_undecoded",
                   "Lines no decoder understood (decode misses)", labels,
                   per_source(lambda c: c.undecoded))
    yield _counter("arguard_lines_ambiguous",
                   "Lines whose address was ambiguous, so none was decoded", labels,
                   per_source(lambda c: c.ambiguous))
    repaired: dict[tuple[str, ...], float] = {}
    for c in counters:
        for repair, count in (("cut", c.text.cut), ("invalid_utf8", c.text.invalid_utf8),
                              ("nul", c.text.nul)):
            repaired[(c.name, c.kind, repair)] = count
    yield _counter("arguard_lines_repaired",
                   "Lines cut to max_line_bytes, with invalid UTF-8 or with NUL bytes",
                   labels + ["repair"], repaired)
    yield _counter("arguard_source_errors", "Faults of a source (unreadable file, journalctl "
                   "ending)", labels, per_source(lambda c: c.errors))


def _detection_metrics(daemon: Daemon) -> Iterator[Metric]:
    rules = daemon.pipeline.engine.tree.rules
    alerts = {(str(rule_id), str(rules[rule_id].level) if rule_id in rules else ""): count
              for rule_id, count in daemon.rule_counts.items()}
    yield _counter("arguard_alerts", "Alerts per rule", ["rule", "level"], alerts)
    yield _counter("arguard_line_errors", "Lines whose processing raised (skipped)", [],
                   {(): daemon.line_errors})
    yield _gauge("arguard_correlation_keys", "Correlation keys held by frequency and ignore "
                 "rules", [], {(): daemon.pipeline.engine.correlation_keys()})


def _response_metrics(daemon: Daemon) -> Iterator[Metric]:
    responder = daemon.responder
    outcomes: Counter[tuple[str, str, str]] = Counter()
    for (command, verb), count in responder.counters.items():
        if verb != "skip":
            outcomes[(command, verb, "")] += count
    for (command, reason), count in responder.skips.items():
        outcomes[(command, "skip", skip_reason(reason))] += count
    yield _counter("arguard_responses",
                   "Responses per command and outcome (add, extend, skip with its reason, "
                   "fail, delete)", ["command", "outcome", "reason"], dict(outcomes))
    active = {(command,): 0 for command in daemon.config.commands}
    active |= {(command,): count
               for command, count in daemon.store.count_active_blocks_by_command().items()}
    yield _gauge("arguard_active_blocks", "Active blocks per command", ["command"], active)


def _daemon_metrics(daemon: Daemon) -> Iterator[Metric]:
    yield _counter("arguard_reloads", "Reloads of configuration, decoders and rules, by result",
                   ["result"], {("ok",): daemon.reloads["ok"],
                                ("refused",): daemon.reloads["refused"]})
    last = daemon.last_reload
    yield _gauge("arguard_config_last_reload_successful",
                 "Whether the last reload was applied (1) or refused (0)", [],
                 {(): 0 if last.get("error") else 1})
    yield _gauge("arguard_config_last_reload_timestamp_seconds",
                 "When the configuration was last loaded (start or reload)", [],
                 {(): last.get("at") or daemon.started})
    yield _gauge("arguard_start_time_seconds", "When the daemon started", [],
                 {(): daemon.started})
    yield _gauge("arguard_build_info", "The running arguard", ["version", "dry_run"],
                 {(__version__, str(daemon.dry_run).lower()): 1})
