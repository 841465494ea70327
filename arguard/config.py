"""Load and validate arguard.toml into frozen, typed configuration objects.

Every problem names the file and the line of the offending table or key. Loading collects
all problems before raising, so `arguard check-config` reports them together.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import shutil
import socket
import urllib.parse
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import regex

from arguard.configfiles import ConfigDocument
from arguard.durations import parse_duration
from arguard.errors import ConfigError, Place, Problem
from arguard.fleet.decision import MEMBER_NAME
from arguard.model import RuleInfo
from arguard.respond.actions import EXECUTABLE_ACTION, action_type, builtin_actions
from arguard.respond.targets import EXPECT_KINDS, check_user
from arguard.schema import (
    BOOLEAN,
    COMMANDS,
    DURATION,
    INTEGER,
    MINUTES,
    PATH,
    REQUIRED,
    RULE_IDS,
    SIZE,
    STRING,
    STRINGS,
    TABLE,
    Option,
    Table,
)
from arguard.tomlfile import TomlFile

DEFAULT_CONFIG = Path("/etc/arguard/arguard.toml")
CONFIG_ENV = "ARGUARD_CONFIG"

JOURNALCTL = "journalctl"
START_AT = ("recent", "end", "beginning")


@dataclass(frozen=True)
class Paths:
    state_dir: Path = Path("/var/lib/arguard")
    log_dir: Path = Path("/var/log/arguard")
    run_dir: Path = Path("/run/arguard")
    decoders_d: Path = Path("/etc/arguard/decoders.d")
    rules_d: Path = Path("/etc/arguard/rules.d")
    lists_d: Path = Path("/etc/arguard/lists")       # list files rules name (`list`)
    ar_bin_dir: Path = Path("/etc/arguard/active-response/bin")

    @property
    def database(self) -> Path:
        return self.state_dir / "arguard.db"

    @property
    def dry_run_database(self) -> Path:
        """`arguard run --dry-run`'s own database: its read positions and would-be blocks,
        never mixed with the blocks that are in place."""
        return self.state_dir / "dry-run.db"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "arguard.lock"

    @property
    def alerts_log(self) -> Path:
        return self.log_dir / "alerts.json"

    @property
    def responses_log(self) -> Path:
        return self.log_dir / "active-responses.log"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    @property
    def own_directories(self) -> tuple[Path, ...]:
        """The directories arguard writes itself, which file integrity never watches."""
        return (self.state_dir, self.log_dir, self.run_dir)

    @property
    def integrity_copies(self) -> Path:
        """The known-good copies of watched files (root only)."""
        return self.state_dir / "integrity-copies"


@dataclass(frozen=True)
class GlobalSettings:
    white_list: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: account names never acted on (locked, terminated)
    white_list_users: tuple[str, ...] = ()
    max_blocks: int = 100_000
    offender_forget: int = 86_400
    unblock_on_exit: bool = False


@dataclass(frozen=True)
class Correlation:
    """[ruleset] settings of the correlation state (frequency and ignore windows)."""

    #: correlation keys each frequency rule keeps at most (the ones with fewest events go first)
    max_keys: int = 100_000
    #: IPv6 addresses are correlated per prefix of this length (an attacker rotating the
    #: addresses of its own /64 is one source); 128: per address
    ipv6_prefix: int = 64


@dataclass(frozen=True)
class Source:
    path: str | None = None
    journal_matches: tuple[str, ...] | None = None
    #: where a source never read before starts: "recent" (its lines of the last minutes,
    #: arguard.sources.recent), "end" or "beginning"
    start_at: str = "recent"
    max_line_bytes: int = 65_536
    poll: bool = False
    journal_directory: str | None = None   # journalctl --directory (default: the system journal)

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path
        name = "journal:" + " ".join(self.journal_matches or ())
        return name if self.journal_directory is None else f"{name} @{self.journal_directory}"


#: what an [[integrity]] table may check, in the order the configuration reference lists them
INTEGRITY_CHECKS = ("sha256", "size", "mode", "owner", "inode", "mtime")
#: the largest `keep_copies`: a copy is held in memory while it is written or restored
MAX_KEEP_COPIES = 64 << 20


@dataclass(frozen=True)
class Integrity:
    """One [[integrity]] table: watched paths (absolute, normalised) and how they are
    checked (docs/integrity.md)."""

    paths: tuple[str, ...]
    recursive: bool = True
    ignore: tuple[str, ...] = ()
    realtime: bool = True
    scan_interval: int = 43_200
    checks: frozenset[str] = frozenset(INTEGRITY_CHECKS)
    follow_symlinks: bool = False
    keep_copies: int = 0          # bytes; 0: no known-good copies
    max_eps: int = 100            # changes reported per second at most


@dataclass(frozen=True)
class Command:
    name: str
    action: str
    expect: str
    timeout_allowed: bool = False
    executable: str | None = None
    extra_args: tuple[str, ...] = ()
    legacy_args: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


#: where an active response runs (Wazuh's names): this host, every host of the fleet, or
#: the hosts named in `agent`
LOCATIONS = ("local", "all", "defined-agent")


@dataclass(frozen=True)
class ActiveResponse:
    command: str
    location: str = "local"
    agents: tuple[str, ...] = ()   # defined-agent: the fleet hosts it runs on
    rules_id: tuple[int, ...] = ()
    level: int | None = None
    rules_group: str | None = None
    timeout: int | None = None
    repeated_offenders: tuple[int, ...] = ()
    #: where rules_id, level and rules_group were written, for the problems found once the
    #: rules are loaded (ruleset.files.binding_problems)
    places: Mapping[str, Place] = field(default_factory=lambda: MappingProxyType({}),
                                        compare=False, repr=False)

    def place(self, key: str) -> Place:
        """Where `key` was written (a binding made in code: nowhere known)."""
        return self.places.get(key) or Place("(configuration)", None)

    def selects(self, rule: RuleInfo) -> bool:
        """Wazuh semantics: `rules_id` OR (`level` AND `rules_group`), where an absent level
        or group does not restrict. The level matches alerts of that level or higher;
        `rules_group` names one group, or several separated by `|`, compared with the
        alert's groups exactly."""
        if rule.id in self.rules_id:
            return True
        if self.level is None and self.rules_group is None:
            return False
        if self.level is not None and rule.level < self.level:
            return False
        if self.rules_group is not None:
            wanted = {g.strip() for g in self.rules_group.split("|")}
            return not wanted.isdisjoint(rule.groups)
        return True


@dataclass(frozen=True)
class MetricsSettings:
    #: (host, port) of the Prometheus endpoint; None: no endpoint
    listen: tuple[str, int] | None = None
    #: node_exporter textfile written every `interval` seconds; None: none
    textfile: Path | None = None
    interval: int = 15

    @property
    def enabled(self) -> bool:
        return self.listen is not None or self.textfile is not None


@dataclass(frozen=True)
class Fleet:
    """[fleet]: the hosts sharing decisions through one PostgreSQL database (arguard.fleet).

    The password is never part of the configuration: it comes from `password_file`, or from
    libpq's own sources (PGPASSWORD in the daemon's environment, ~/.pgpass)."""

    dsn: str
    name: str
    schema: str = "arguard"
    password_file: Path | None = None
    #: hosts whose decisions this one applies; None: every host of the fleet
    trusted_origins: tuple[str, ...] | None = None
    connect_timeout: int = 5


@dataclass(frozen=True)
class Config:
    path: Path | None
    paths: Paths
    global_: GlobalSettings
    sources: tuple[Source, ...]
    commands: Mapping[str, Command]
    active_responses: tuple[ActiveResponse, ...]
    shipped_ruleset: bool = True
    correlation: Correlation = Correlation()
    integrity: tuple[Integrity, ...] = ()
    fragments: tuple[Path, ...] = ()   # the conf.d files merged into this configuration
    metrics: MetricsSettings = MetricsSettings()
    #: the zone of the rules' `time` and `weekday` conditions; None: the host's
    time_zone: str | None = None
    fleet: Fleet | None = None
    #: each file's path and text as loaded (main file first), for the copy the daemon keeps
    texts: tuple[tuple[Path, str], ...] = ()

# --- the schema: every table and key the loader accepts (docs/configuration.md is made
# from it, by arguard.configdoc) -------------------------------------------------------------

PATHS = Table("paths", False, (
    "Where arguard keeps its state, logs and control socket, and where it finds drop-in "
    "files. Relative paths are relative to the configuration file's directory, so a test or "
    "a user can keep a whole arguard in one directory. A change takes effect at the next "
    "restart."), (
    Option("state_dir", PATH, str(Paths.state_dir),
           "arguard.db (blocks, offences and their log lines, offenders, read offsets), "
           "dry-run.db (a dry run's own), config.last-good.json (the configuration the "
           "daemon loaded, for the CLI when the file is broken) and the daemon's lock file"),
    Option("log_dir", PATH, str(Paths.log_dir),
           "alerts.json (Wazuh's alert format) and active-responses.log"),
    Option("run_dir", PATH, str(Paths.run_dir), "control.sock, the CLI's way to the daemon"),
    Option("decoders_d", PATH, str(Paths.decoders_d), "drop-in decoder files (*.toml)"),
    Option("rules_d", PATH, str(Paths.rules_d), "drop-in rule files (*.toml)"),
    Option("lists_d", PATH, str(Paths.lists_d),
           "the list files rules name with `list` (Wazuh's CDB lists: `key:value` lines) by "
           "a path relative to it"),
    Option("ar_bin_dir", PATH, str(Paths.ar_bin_dir),
           "the custom response executables a `[[command]]` names with `executable`"),
))
RULESET = Table("ruleset", False, (
    "Which decoder and rule files load, the bounds of the correlation state (what "
    "`frequency` and `ignore` rules remember) and the time zone of `time` and `weekday` "
    "conditions (docs/formats.md)."), (
    Option("shipped", BOOLEAN, True,
           "load the package's decoders and rules before the drop-ins; false: drop-ins only"),
    Option("correlation_keys", INTEGER, Correlation.max_keys,
           "correlation keys each frequency or ignore rule keeps at most (at least 1); past "
           "it, the key with the fewest events, then the least recently seen, is dropped"),
    Option("correlation_ipv6_prefix", INTEGER, Correlation.ipv6_prefix,
           "IPv6 addresses in a `same_*` key count per prefix of this length (1-128; 128: "
           "per address), so an attacker cycling the addresses of its own /64 is one source"),
    Option("time_zone", STRING, None,
           "the zone of the rules' `time` and `weekday` conditions (\"Europe/Berlin\", "
           "\"UTC\"; a zone of the system's database); none: the host's"),
))
GLOBAL = Table("global", False, "Settings of the respond stage as a whole.", (
    Option("white_list", STRINGS, [],
           "addresses and CIDRs (IPv4, IPv6, `::ffff:` forms folded) never acted on, "
           "whatever the logs say"),
    Option("white_list_users", STRINGS, [],
           "account names never locked, terminated or otherwise acted on (root and UIDs below "
           "an action's min_uid never are)"),
    Option("max_blocks", INTEGER, GlobalSettings.max_blocks,
           "active blocks at most; past this new blocks are skipped and logged"),
    Option("offender_forget", DURATION, GlobalSettings.offender_forget,
           "quiet time after which an offender's count starts again at 1 (seconds or a "
           "duration)"),
    Option("unblock_on_exit", BOOLEAN, GlobalSettings.unblock_on_exit,
           "lift every block when the daemon stops; by default blocks stay in place"),
))
SOURCE = Table("source", True, (
    "A log to follow: a file (`path`, globs allowed) or the systemd journal (`journal`), "
    "exactly one of them."), (
    Option("path", STRING, None,
           "a log file, or a glob (`/var/log/nginx/*access.log`); rotation, truncation and "
           "symlinks are followed, offsets kept by device and inode"),
    Option("journal", TABLE, None,
           "follow the systemd journal through journalctl: `journal = { matches = "
           "[\"_COMM=sshd\"] }` (the keys of [source.journal] below)"),
    Option("start_at", STRING, Source.start_at,
           "where a source never read before starts: \"recent\", its lines of the last "
           "minutes (as far back as the longest correlation timeframe, at most 8 MiB; "
           "docs/operations.md); \"end\", new lines only; \"beginning\", all of it",
           choices=START_AT),
    Option("max_line_bytes", INTEGER, Source.max_line_bytes,
           "longer lines are cut (and counted), at least 256"),
    Option("poll", BOOLEAN, Source.poll,
           "watch the file by polling instead of inotify (network file systems)"),
))
SOURCE_JOURNAL = Table("source.journal", False, "The `journal` table of a `[[source]]`.", (
    Option("matches", STRINGS, [],
           "journalctl matches, `FIELD=value` (`_COMM=sshd`, `_SYSTEMD_UNIT=nginx.service`); "
           "none: the whole journal"),
    Option("directory", PATH, None,
           "a journal directory (journalctl --directory); none: the system journal"),
))
INTEGRITY = Table("integrity", True, (
    "Files and directories whose changes are alerts (Wazuh's syscheck: rules 550, 553, 554; "
    "docs/integrity.md)."), (
    Option("paths", STRINGS, REQUIRED,
           "files and directories to watch (relative to the configuration file; not /); a "
           "path inside another table's belongs to the inner one"),
    Option("recursive", BOOLEAN, Integrity.recursive,
           "also watch subdirectories; false: the directory's own files only"),
    Option("ignore", STRINGS, [],
           "glob patterns: without / a name anywhere below (\"*.swp\", \".git\"), with / a "
           "whole path"),
    Option("realtime", BOOLEAN, Integrity.realtime, "watch through inotify; false: scans only"),
    Option("scan_interval", DURATION, Integrity.scan_interval,
           "time between full scans (seconds or a duration)"),
    Option("checks", STRINGS, list(INTEGRITY_CHECKS),
           "what a change is: " + ", ".join(INTEGRITY_CHECKS)),
    Option("follow_symlinks", BOOLEAN, Integrity.follow_symlinks,
           "watch a symlink as the file or directory it points to (loops are cut)"),
    Option("keep_copies", SIZE, Integrity.keep_copies,
           "keep the known-good content of files up to this size (\"1MB\", \"512KB\", bytes; at "
           "most 64MB) for restore-file; needs sha256 among the checks"),
    Option("max_eps", INTEGER, Integrity.max_eps, "changes reported per second at most"),
))
COMMAND = Table("command", True, (
    "A response arguard can apply: a built-in action (`action`, with the action's options "
    "below) or a custom executable (`executable`, the `script` action), exactly one of "
    "them."), (
    Option("name", STRING, REQUIRED,
           "what `[[active_response]]`, `arguard block --command` and the logs call it"),
    Option("action", STRING, None, "a built-in action: one of the actions below"),
    Option("executable", STRING, None,
           "a program in paths.ar_bin_dir (a bare file name), run with Wazuh's 4.x JSON "
           "protocol on stdin: the `script` action"),
    Option("expect", STRING, "srcip",
           "the alert field it acts on (its kind of target: srcip, dstip an address; "
           "srcuser, dstuser, user an account; filename a watched file; _PID the process "
           "the journal attested for the entry); default: the action's",
           choices=tuple(EXPECT_KINDS)),
    Option("timeout_allowed", BOOLEAN, Command.timeout_allowed,
           "whether blocks of this command may be timed (active_response.timeout)"),
    Option("extra_args", STRINGS, [],
           "executable commands: given to the program as `parameters.extra_args` (argv with "
           "legacy_args)"),
    Option("legacy_args", BOOLEAN, Command.legacy_args,
           "executable commands: `ACTION USER IP ALERT_ID` as argv, the pre-4.x protocol"),
))
ACTIVE_RESPONSE = Table("active_response", True, (
    "Binds a command to rules. `rules_id` OR (`level` AND `rules_group`); a selection that "
    "selects no loaded alerting rule is an error."), (
    Option("command", COMMANDS, REQUIRED,
           "the `[[command]]` to apply, or a list of them: a chain, run in that order for "
           "each alert (`[\"disable-account\", \"terminate-sessions\"]`: lock, then "
           "terminate)"),
    Option("location", STRING, "local",
           "where it runs (Wazuh's names): \"local\", this host; with a `[fleet]`, \"all\", "
           "this host and every other host of the fleet, or \"defined-agent\", the hosts "
           "named in `agent` (this one too only if named)", choices=LOCATIONS),
    Option("agent", STRINGS, [],
           "location = \"defined-agent\": the fleet hosts it runs on (their `fleet.name`)"),
    Option("rules_id", RULE_IDS, [], "rule ids whose alerts it responds to"),
    Option("level", INTEGER, None, "alerts of this level (0-16) or higher"),
    Option("rules_group", STRING, None,
           "alerts of rules in this group, or in any of several separated by `|`"),
    Option("timeout", DURATION, None,
           "how long a block lasts (seconds or a duration); none: permanent. A stateless "
           "command (terminate-sessions, kill-process) acts once and keeps nothing to lift: "
           "the timeout applies to the other commands of its chain"),
    Option("repeated_offenders", MINUTES, [],
           "the timeouts of the 2nd, 3rd, 4th and later offences (as Wazuh: integers are "
           "minutes); needs timeout"),
    Option("disabled", BOOLEAN, False, "keep the binding in the file but do not use it"),
))
METRICS = Table("metrics", False, (
    "Prometheus metrics of the running daemon (docs/metrics.md): an HTTP endpoint, a "
    "node_exporter textfile, or both. None by default."), (
    Option("listen", STRING, None,
           "`host:port` of the HTTP endpoint (`127.0.0.1:9811`, `[::1]:9811`); it serves "
           "/metrics"),
    Option("textfile", PATH, None,
           "a file for node_exporter's textfile collector "
           "(`/var/lib/node_exporter/textfile_collector/arguard.prom`), replaced atomically"),
    Option("interval", DURATION, MetricsSettings.interval,
           "how often the textfile is written (seconds or a duration)"),
))
FLEET = Table("fleet", False, (
    "Hosts sharing their decisions through one PostgreSQL database (docs/fleet.md): a block "
    "of an `[[active_response]]` with location \"all\" or \"defined-agent\" is applied by "
    "the other hosts too, unblocks follow it, and a rule with `scope = \"fleet\"` counts the "
    "events of every host. Needs psycopg 3 (`pip install 'arguard[fleet]'`) and, once, "
    "`arguard fleet init`. None by default: the host is on its own."), (
    Option("dsn", STRING, REQUIRED,
           "the libpq connection string, a `postgresql://user@host/database` URL or "
           "`key=value` pairs; never with a password (an error): see password_file"),
    Option("password_file", PATH, None,
           "a file holding the database password (its first line); none: libpq's own "
           "sources, PGPASSWORD in the daemon's environment or ~/.pgpass"),
    Option("name", STRING, None,
           "this host's name in the fleet (letters, digits, `.`, `-`, `_`; at most 128), as "
           "`agent` and trusted_origins name it; none: the hostname"),
    Option("schema", STRING, Fleet.schema,
           "the PostgreSQL schema of the fleet's tables (lower-case letters, digits, `_`): "
           "several fleets can share one database"),
    Option("trusted_origins", STRINGS, None,
           "the hosts whose decisions this one applies; none: every host of the fleet"),
    Option("connect_timeout", DURATION, Fleet.connect_timeout,
           "how long a connection attempt to the database may take (1s-5m)"),
))
#: every table of the configuration file, in the order the reference shows them
TABLES: tuple[Table, ...] = (PATHS, GLOBAL, RULESET, SOURCE, SOURCE_JOURNAL, INTEGRITY,
                             COMMAND, ACTIVE_RESPONSE, METRICS, FLEET)


def shipped_dir(kind: str) -> Path:
    """Directory of the decoders, rules or conf files that come with the package: inside the
    installed package (see pyproject.toml), or at the top of a source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "shipped" / kind
    return installed if installed.is_dir() else package.parent / kind


def resolve_config_path(cli_path: str | None) -> Path | None:
    """-c FILE, then $ARGUARD_CONFIG, then /etc/arguard/arguard.toml; None when none exists."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load_config(path: Path | None) -> Config:
    """Load a config file with the conf.d/*.toml fragments beside it; with None, the shipped
    default configuration."""
    if path is None:
        return _Loader(TomlFile.load(shipped_dir("conf") / "arguard.toml"), is_default=True).load()
    return _Loader(ConfigDocument.load(path), is_default=False).load()


def config_from_texts(files: list[tuple[Path, str]]) -> Config:
    """A configuration from the saved text of its files (the main file first, then its
    fragments), loaded as if read from those paths."""
    main, *fragments = [TomlFile.parse(path, text) for path, text in files]
    return _Loader(ConfigDocument(main, fragments), is_default=False).load()


class _Loader:
    def __init__(self, doc: TomlFile | ConfigDocument, is_default: bool):
        self.doc = doc
        self.is_default = is_default
        self.problems: list[Problem] = []
        self.base = doc.path.parent

    def fail(self, message: str, table: str | None = None, index: int | None = None,
             key: str | None = None) -> None:
        self.problems.append(self.doc.problem(message, table, index, key))

    def check(self, data: dict, schema: Table, index: int | None = None,
              within: str | None = None) -> dict[str, Any]:
        """The keys of `data` that the schema knows with values of the right type (and among
        its choices); each other key is reported once. `within`: the key of the parent
        table that holds this one (an inline table such as `journal = {…}`)."""
        table = schema.name.split(".")[0]
        valid: dict[str, Any] = {}
        for key, value in data.items():
            option = schema.key(key)
            where = within or key
            if option is None:
                self.fail(f"unknown key {key!r} in [{schema.name}]", table, index, where)
            elif not option.type.accepts(value):
                self.fail(f"{schema.name}.{key} must be {option.type.name}", table, index,
                          where)
            elif option.choices and value not in option.choices:
                self.fail(f"{schema.name}.{key} must be {option.choices_text}", table, index,
                          where)
            else:
                valid[key] = value
        return valid

    def misspelt(self, before: int) -> bool:
        """Whether an unknown key was reported since `before` problems: then a key that
        "is missing" is most likely that one, and is not reported a second time."""
        return any(p.message.startswith("unknown key") for p in self.problems[before:])

    def table(self, schema: Table) -> dict[str, Any]:
        value = self.doc.data.get(schema.name, {})
        if not isinstance(value, dict):
            self.fail(f"[{schema.name}] must be a table", key=schema.name)
            return {}
        return self.check(value, schema)

    def array(self, name: str) -> list[dict]:
        value = self.doc.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(f"{name} must be written as [[{name}]] tables", key=name)
            return []
        return value

    def duration(self, data: dict, key: str, table: str, index: int | None,
                 default: int | None) -> int | None:
        """A duration (`600`, `"10m"`, `"1h30m"`, `"7d"`) of checked `data`, in seconds."""
        if key not in data:
            return default
        try:
            return parse_duration(data[key])
        except ValueError as error:
            self.fail(f"{table}.{key} must be {error}", table, index, key)
            return default

    def path(self, value: str) -> Path:
        return (self.base / value) if not os.path.isabs(value) else Path(value)

    def load(self) -> Config:
        known = {schema.name for schema in TABLES if "." not in schema.name}
        for key in self.doc.data:
            if key not in known:
                self.fail(f"unknown top-level key or table {key!r}", key=key)
        paths = self.load_paths()
        global_ = self.load_global()
        ruleset = self.table(RULESET)
        time_zone = ruleset.get("time_zone")
        if time_zone is not None and not _is_time_zone(time_zone):
            self.fail(f"ruleset.time_zone {time_zone!r} is not a time zone of the system's "
                      "database (e.g. \"Europe/Berlin\", \"UTC\")", "ruleset", key="time_zone")
            time_zone = None
        correlation = Correlation(ruleset.get("correlation_keys", Correlation.max_keys),
                                  ruleset.get("correlation_ipv6_prefix", Correlation.ipv6_prefix))
        if correlation.max_keys < 1:
            self.fail("ruleset.correlation_keys must be at least 1", "ruleset",
                      key="correlation_keys")
        if not 1 <= correlation.ipv6_prefix <= 128:
            self.fail("ruleset.correlation_ipv6_prefix must be 1-128", "ruleset",
                      key="correlation_ipv6_prefix")
        metrics = self.load_metrics()
        sources = tuple(s for s in (self.load_source(i, d)
                                    for i, d in enumerate(self.array("source"))) if s)
        integrity = self.load_integrity_entries()
        commands: dict[str, Command] = {}
        # commands whose own table has a problem (reported there): a response that names
        # one is not told again that the command does not exist
        reported: set[str] = set()
        for index, data in enumerate(self.array("command")):
            command = self.load_command(index, data)
            if command is None:
                if isinstance(data.get("name"), str):
                    reported.add(data["name"])
                continue
            if command.name in commands:
                self.fail(f"command {command.name!r} is defined twice", "command", index, "name")
            commands[command.name] = command
        fleet = self.load_fleet()
        responses = tuple(r for i, d in enumerate(self.array("active_response"))
                          for r in self.load_response(i, d, commands, reported))
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            path=None if self.is_default else self.doc.path,
            paths=paths, global_=global_, sources=sources,
            commands=MappingProxyType(commands), active_responses=responses,
            shipped_ruleset=ruleset.get("shipped", True), correlation=correlation,
            fragments=getattr(self.doc, "fragments", ()), metrics=metrics,
            integrity=integrity, time_zone=time_zone, fleet=fleet, texts=self.doc.texts,
        )

    def load_paths(self) -> Paths:
        return Paths(**{k: self.path(v) for k, v in self.table(PATHS).items()})

    def load_global(self) -> GlobalSettings:
        data = self.table(GLOBAL)
        networks = []
        for entry in data.get("white_list", []):
            network = parse_network(entry)
            if network is None:
                self.fail(f"white_list entry {entry!r} is not an IP address or CIDR",
                          "global", key="white_list")
            else:
                networks.append(network)
        users = data.get("white_list_users", [])
        for entry in users:
            refused = check_user(entry).refused
            if refused is not None:
                self.fail(f"white_list_users entry {entry!r} is not an account name ({refused})",
                          "global", key="white_list_users")
        if data.get("max_blocks", 1) <= 0:
            self.fail("global.max_blocks must be positive", "global", key="max_blocks")
        defaults = GlobalSettings()
        return GlobalSettings(
            white_list=tuple(networks),
            white_list_users=tuple(users),
            max_blocks=data.get("max_blocks", defaults.max_blocks),
            offender_forget=self.duration(data, "offender_forget", "global", None,
                                          defaults.offender_forget),
            unblock_on_exit=data.get("unblock_on_exit", defaults.unblock_on_exit),
        )

    def load_metrics(self) -> MetricsSettings:
        data = self.table(METRICS)
        listen = None
        if "listen" in data:
            listen = parse_endpoint(data["listen"])
            if listen is None:
                self.fail(f"metrics.listen {data['listen']!r} must be host:port "
                          "(127.0.0.1:9811, [::1]:9811)", "metrics", key="listen")
        return MetricsSettings(
            listen=listen,
            textfile=self.path(data["textfile"]) if "textfile" in data else None,
            interval=self.duration(data, "interval", "metrics", None,
                                   MetricsSettings.interval))

    def load_fleet(self) -> Fleet | None:
        if FLEET.name not in self.doc.data:
            return None
        before = len(self.problems)
        raw = self.doc.data[FLEET.name]
        data = self.table(FLEET)
        if not isinstance(raw, dict):
            return None
        if "dsn" not in raw:
            if not self.misspelt(before):
                self.fail("[fleet] needs 'dsn', the PostgreSQL connection string "
                          "(postgresql://user@host/database)", "fleet")
        elif "dsn" in data:
            problem = dsn_problem(data["dsn"])
            if problem is not None:
                self.fail(f"fleet.dsn {problem}", "fleet", key="dsn")
        name = data.get("name", socket.gethostname())
        trusted = data.get("trusted_origins")
        for key, value in [("name", name)] + [("trusted_origins", v) for v in trusted or ()]:
            if not MEMBER_NAME.fullmatch(value):
                self.fail(f"fleet.{key}: {value!r} is not a host name (letters, digits, '.', "
                          "'-', '_'; at most 128)", "fleet", key=key)
        schema = data.get("schema", Fleet.schema)
        if not regex.fullmatch(r"[a-z_][a-z0-9_]{0,39}", schema):
            self.fail("fleet.schema must be a lower-case SQL name (letters, digits, '_'; at "
                      "most 40)", "fleet", key="schema")
        if importlib.util.find_spec("psycopg") is None:
            self.fail("[fleet] needs psycopg 3, which is not installed: pip install "
                      "'arguard[fleet]' (or Debian's python3-psycopg)", "fleet")
        timeout = self.duration(data, "connect_timeout", "fleet", None, Fleet.connect_timeout)
        if not 1 <= timeout <= 300:
            self.fail("fleet.connect_timeout must be 1-300 seconds (or a duration up to "
                      "\"5m\")", "fleet", key="connect_timeout")
        if len(self.problems) > before:
            return None
        password_file = data.get("password_file")
        return Fleet(dsn=data["dsn"], name=name, schema=schema,
                     password_file=None if password_file is None else self.path(password_file),
                     trusted_origins=None if trusted is None else tuple(trusted),
                     connect_timeout=timeout)

    def load_source(self, index: int, raw: dict) -> Source | None:
        before = len(self.problems)
        data = self.check(raw, SOURCE, index)
        if ("path" in raw) == ("journal" in raw) and not (
                "path" not in raw and self.misspelt(before)):
            self.fail("a [[source]] needs exactly one of 'path' or 'journal'", "source", index)
        matches: tuple[str, ...] | None = None
        directory: str | None = None
        if "journal" in data:
            journal = self.check(data["journal"], SOURCE_JOURNAL, index, within="journal")
            if "directory" in journal:
                directory = str(self.path(journal["directory"]))
            if shutil.which(JOURNALCTL) is None:
                self.fail(f"a journal source needs {JOURNALCTL}, which is not installed (not "
                          "found in PATH); install systemd's journalctl or follow a log file "
                          "instead", "source", index, "journal")
            wrong = [m for m in journal.get("matches", [])
                     if not regex.fullmatch(r"[A-Z0-9_]+=.*", m)]
            if wrong:
                self.fail(f"journal match {wrong[0]!r} is not FIELD=value", "source", index,
                          "journal")
            matches = tuple(journal.get("matches", ()))
        if data.get("max_line_bytes", 256) < 256:
            self.fail("max_line_bytes must be at least 256", "source", index, "max_line_bytes")
        if len(self.problems) > before:
            return None
        path = data.get("path")
        defaults = Source()
        return Source(
            path=str(self.path(path)) if path else None,
            journal_matches=matches,
            start_at=data.get("start_at", defaults.start_at),
            max_line_bytes=data.get("max_line_bytes", defaults.max_line_bytes),
            poll=data.get("poll", defaults.poll),
            journal_directory=directory,
        )

    def load_integrity_entries(self) -> tuple[Integrity, ...]:
        entries: list[Integrity] = []
        seen: dict[str, int] = {}
        for index, data in enumerate(self.array("integrity")):
            entry = self.load_integrity(index, data)
            if entry is None:
                continue
            for path in entry.paths:
                if path in seen:
                    self.fail(f"{path} is watched by two [[integrity]] tables (#{seen[path] + 1} "
                              f"and #{index + 1})", "integrity", index, "paths")
                seen.setdefault(path, index)
            entries.append(entry)
        return tuple(entries)

    def load_integrity(self, index: int, raw: dict) -> Integrity | None:
        before = len(self.problems)
        data = self.check(raw, INTEGRITY, index)
        given = data.get("paths")
        paths: list[str] = []
        if "paths" not in raw:
            if not self.misspelt(before):
                self.fail("an [[integrity]] table needs 'paths', a list of files or "
                          "directories", "integrity", index)
        elif given is not None and (not given or not all(
                p.strip() and "\0" not in p for p in given)):
            self.fail("integrity.paths must be a list of files or directories",
                      "integrity", index, "paths")
        elif given is not None:
            for name in given:
                path = os.path.normpath(str(self.path(name)))
                if path == "/":
                    self.fail("watching / is not supported: name the directories to watch",
                              "integrity", index, "paths")
                elif path not in paths:
                    paths.append(path)
        ignore = data.get("ignore", [])
        if not all(ignore):
            self.fail("ignore must be a list of glob patterns", "integrity", index, "ignore")
        checks = data.get("checks", list(INTEGRITY_CHECKS))
        if isinstance(checks, list) and (not checks or not all(c in INTEGRITY_CHECKS
                                                               for c in checks)):
            self.fail("checks must be a list of " + ", ".join(INTEGRITY_CHECKS),
                      "integrity", index, "checks")
        interval = self.duration(data, "scan_interval", "integrity", index,
                                 Integrity.scan_interval)
        keep = _size(data.get("keep_copies", 0))
        if keep is None or keep > MAX_KEEP_COPIES:
            self.fail("keep_copies must be a size such as \"1MB\" or \"512KB\" (at most "
                      "64MB), or 0", "integrity", index, "keep_copies")
        elif keep and isinstance(checks, list) and "sha256" not in checks:
            self.fail("keep_copies needs \"sha256\" among the checks (a copy is known by "
                      "its sha256)", "integrity", index, "keep_copies")
        if data.get("max_eps", 1) <= 0:
            self.fail("max_eps must be positive", "integrity", index, "max_eps")
        if len(self.problems) > before:
            return None
        defaults = Integrity(paths=())
        return Integrity(
            paths=tuple(paths), recursive=data.get("recursive", defaults.recursive),
            ignore=tuple(ignore), realtime=data.get("realtime", defaults.realtime),
            scan_interval=interval, checks=frozenset(checks),
            follow_symlinks=data.get("follow_symlinks", defaults.follow_symlinks),
            keep_copies=keep, max_eps=data.get("max_eps", defaults.max_eps),
        )

    def load_command(self, index: int, raw: dict) -> Command | None:
        """A [[command]]: its own keys here; the action's options, and which targets it
        acts on, as the action's description (arguard.respond.actions) says."""
        before = len(self.problems)
        own = {k: v for k, v in raw.items() if COMMAND.key(k) is not None}
        data = self.check(own, COMMAND, index)
        action = data.get("action")
        executable = data.get("executable")
        name = data.get("name")
        if name is not None and not regex.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            self.fail("command name must be letters, digits, '-', '_' or '.'", "command",
                      index, "name")
        described = None
        if ("action" in raw) == ("executable" in raw):
            self.fail("a [[command]] needs exactly one of 'action' (built-in) or 'executable'",
                      "command", index)
        elif executable is not None:
            described = action_type(EXECUTABLE_ACTION)
            action = EXECUTABLE_ACTION
            if "/" in executable or executable in (".", "..") or not executable.strip():
                self.fail("executable must be a bare file name inside paths.ar_bin_dir "
                          "(no '/')", "command", index, "executable")
        elif action is not None and action in builtin_actions():
            described = action_type(action)
        elif action is not None:
            self.fail(f"unknown action {action!r}; built-in actions are "
                      + ", ".join(builtin_actions()), "command", index, "action")
        expect = data.get("expect", described.default_expect if described else "srcip")
        if described is not None and EXPECT_KINDS[expect] not in described.kinds:
            self.fail(f"expect {expect!r} gives targets of kind {EXPECT_KINDS[expect]}, but "
                      f"action {action!r} acts on targets of kind "
                      + " or ".join(described.kinds), "command", index, "expect")
        elif EXPECT_KINDS[expect] == "file" and data.get("timeout_allowed") is True:
            self.fail("a command that acts on files (expect = \"filename\") runs once per "
                      "alert: timeout_allowed is not supported", "command", index,
                      "timeout_allowed")
        given = {k: v for k, v in raw.items() if k not in own}
        if described is not None:
            for key, message in described.problems(action, given):
                self.fail(message, "command", index, key)
        if "name" not in raw and not self.misspelt(before):
            self.fail("command needs a 'name'", "command", index)
        if len(self.problems) > before or described is None:
            return None
        options = described.with_defaults(given)
        for option in described.options:
            if option.type.path:
                options[option.name] = str(self.path(options[option.name]))
        return Command(
            name=name, action=action, expect=expect,
            timeout_allowed=data.get("timeout_allowed", False), executable=executable,
            extra_args=tuple(data.get("extra_args", ())),
            legacy_args=data.get("legacy_args", False), options=MappingProxyType(options),
        )

    def load_response(self, index: int, raw: dict, commands: Mapping[str, Command],
                      reported: set[str]) -> list[ActiveResponse]:
        """An [[active_response]]: one binding per command it names, in their order.
        `command = ["disable-account", "terminate-sessions"]` is a chain, whose commands run
        one after another for each alert (lock, then terminate). A stateless command acts
        once: the table's timeout and repeated_offenders apply to the others. Each mistake
        is reported once: a key of the wrong type by `check` only, a command whose own table
        is wrong at that table only."""
        table = "active_response"
        before = len(self.problems)
        data = self.check(raw, ACTIVE_RESPONSE, index)
        command = data.get("command")
        names = [command] if isinstance(command, str) else command or []
        timeout = self.duration(data, "timeout", table, index, None)
        if "command" not in raw:
            if not self.misspelt(before):
                self.fail("active_response needs 'command'", table, index)
        elif command is not None and not names:
            self.fail("active_response needs 'command': a command name, or a list of them "
                      "(run in that order)", table, index, "command")
        for name in names:
            if name not in commands and name not in reported:
                self.fail(f"active_response names unknown command {name!r}", table, index,
                          "command")
        if len(set(names)) < len(names):
            self.fail("active_response names a command twice", table, index, "command")
        timed = [name for name in names if name in commands and not stateless(commands[name])]
        if "timeout" in raw:
            for name in timed:
                if not commands[name].timeout_allowed:
                    self.fail(f"timeout given but command {name!r} does not set "
                              "timeout_allowed", table, index, "timeout")
            if not timed and names and all(name in commands for name in names):
                self.fail("timeout given but " + ", ".join(repr(n) for n in names)
                          + " act once and keep nothing to lift (stateless)",
                          table, index, "timeout")
        location = data.get("location", "local")
        agents = data.get("agent", [])
        if location != "local" and "fleet" not in self.doc.data:
            self.fail(f"location {location!r} shares the response with a fleet: it needs a "
                      "[fleet] section (docs/fleet.md)", table, index, "location")
        if not all(MEMBER_NAME.fullmatch(agent) for agent in agents):
            self.fail("agent must be a list of fleet host names", table, index, "agent")
        elif location == "defined-agent" and not agents:
            self.fail("location \"defined-agent\" needs agent = [\"host\", …], the hosts it "
                      "runs on", table, index, "location")
        elif agents and location != "defined-agent":
            self.fail("agent is only for location = \"defined-agent\"", table, index, "agent")
        rules_id = data.get("rules_id", [])
        rules_id = [rules_id] if isinstance(rules_id, int) else rules_id
        if not raw.get("rules_id") and "level" not in raw and "rules_group" not in raw \
                and not self.misspelt(before):
            self.fail("active_response needs rules_id, level or rules_group", table, index)
        if not 0 <= data.get("level", 0) <= 16:
            self.fail("level must be 0-16", table, index, "level")
        offenders = self.repeated_offenders(data, index)
        if offenders and "timeout" not in raw:
            self.fail("repeated_offenders needs a timeout", table, index, "repeated_offenders")
        if len(self.problems) > before or data.get("disabled", False):
            return []
        places = MappingProxyType({key: Place.of(self.doc.problem("", table, index, key))
                                   for key in ("rules_id", "level", "rules_group")
                                   if key in data})
        return [ActiveResponse(
            command=name, location=location, agents=tuple(agents), rules_id=tuple(rules_id),
            level=data.get("level"), rules_group=data.get("rules_group"),
            timeout=timeout if name in timed else None,
            repeated_offenders=offenders if name in timed else (), places=places,
        ) for name in names]

    def repeated_offenders(self, data: dict, index: int) -> tuple[int, ...]:
        """Minutes for the 2nd, 3rd, … offence: integers (minutes, as in Wazuh) or durations
        of whole minutes ("30m", "2h", "1d")."""
        minutes: list[int] = []
        for entry in data.get("repeated_offenders", []):
            try:
                seconds = entry * 60 if isinstance(entry, int) else parse_duration(entry)
            except ValueError:
                seconds = 0
            if seconds <= 0 or seconds % 60:
                self.fail("repeated_offenders must be positive minutes (30) or durations of "
                          f"whole minutes (\"30m\", \"2h\"), not {entry!r}",
                          "active_response", index, "repeated_offenders")
                return ()
            minutes.append(seconds // 60)
        return tuple(minutes)


def stateless(command: Command) -> bool:
    """Whether the command's action acts once and keeps nothing to lift (its description
    says): no block is recorded for it, a binding's timeout does not apply to it."""
    described = action_type(command.action)
    return described is not None and described.stateless


def parse_endpoint(text: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port` as (host, port); None when it is neither."""
    match = regex.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]+)):(\d{1,5})", text)
    if match is None or not 0 < int(match.group(3)) < 65536:
        return None
    return (match.group(1) or match.group(2), int(match.group(3)))


_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def _size(value: Any) -> int | None:
    """Bytes from an integer >= 0 or `512KB`, `1MB` (powers of 1024); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    found = regex.fullmatch(r"\s*(\d+)\s*([kmg]?b)?\s*", value, regex.IGNORECASE) \
        if isinstance(value, str) else None
    if found is None:
        return None
    return int(found[1]) * _SIZE_UNITS[(found[2] or "b").lower()]


def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with a libpq connection string for [fleet] (a URL or key=value pairs),
    None if nothing: it must parse, and must not hold the password."""
    if regex.match(r"postgres(?:ql)?://", dsn):
        try:
            parts = urllib.parse.urlsplit(dsn)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError as error:
            return f"is not a valid postgresql:// URL: {error}"
        query = urllib.parse.parse_qs(parts.query)
        if parts.password is not None or "password" in query:
            return ("holds a password: put it in password_file (or PGPASSWORD in the "
                    "daemon's environment), never in the configuration")
        return None
    pairs = regex.findall(r"\s*([A-Za-z_]+)\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']+)", dsn)
    rest = regex.sub(r"\s*([A-Za-z_]+)\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']+)", "", dsn)
    if not pairs or rest.strip():
        return "is neither a postgresql:// URL nor key=value pairs"
    if "password" in pairs:
        return ("holds a password: put it in password_file (or PGPASSWORD in the daemon's "
                "environment), never in the configuration")
    return None


def parse_network(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An address or CIDR as a network, `::ffff:a.b.c.d` folded to IPv4; None if invalid."""
    if not isinstance(text, str):
        return None
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{mapped}/{max(network.prefixlen - 96, 0)}", strict=False)
    return network
