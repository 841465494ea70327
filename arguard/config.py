"""Load and validate arguard.toml into frozen, typed configuration objects.

Every problem names the file and the line of the offending table or key. Loading collects
all problems before raising, so `arguard check-config` reports them together.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import regex

from arguard.configfiles import ConfigDocument
from arguard.errors import ConfigError, Problem
from arguard.respond.actions import EXECUTABLE_ACTION, action_type, builtin_actions
from arguard.respond.targets import EXPECT_KINDS
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


@dataclass(frozen=True)
class ActiveResponse:
    command: str
    location: str = "local"
    rules_id: tuple[int, ...] = ()
    level: int | None = None
    rules_group: str | None = None
    timeout: int | None = None
    repeated_offenders: tuple[int, ...] = ()


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
    #: the zone of the rules' `time` and `weekday` conditions; None: the host's
    time_zone: str | None = None
    #: each file's path and text as loaded (main file first), for the copy the daemon keeps
    texts: tuple[tuple[Path, str], ...] = ()


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


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "a table", float: "a number"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kind)
    return _TYPE_NAMES.get(kind, kind.__name__)


def _is_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


class _Loader:
    def __init__(self, doc: TomlFile | ConfigDocument, is_default: bool):
        self.doc = doc
        self.is_default = is_default
        self.problems: list[Problem] = []
        self.base = doc.path.parent

    def fail(self, message: str, table: str | None = None, index: int | None = None,
             key: str | None = None) -> None:
        self.problems.append(self.doc.problem(message, table, index, key))

    def check_keys(self, data: dict, allowed: Mapping[str, Any], table: str,
                   index: int | None = None) -> None:
        for key, value in data.items():
            if key not in allowed:
                self.fail(f"unknown key {key!r} in [{table}]", table, index, key)
            elif not _is_type(value, allowed[key]):
                self.fail(f"{table}.{key} must be {_type_name(allowed[key])}", table, index, key)

    def table(self, name: str) -> dict:
        value = self.doc.data.get(name, {})
        if not isinstance(value, dict):
            self.fail(f"[{name}] must be a table", key=name)
            return {}
        return value

    def array(self, name: str) -> list[dict]:
        value = self.doc.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(f"{name} must be written as [[{name}]] tables", key=name)
            return []
        return value

    def path(self, value: str) -> Path:
        return (self.base / value) if not os.path.isabs(value) else Path(value)

    def load(self) -> Config:
        known = {"paths", "global", "ruleset", "source", "integrity", "command",
                 "active_response"}
        for key in self.doc.data:
            if key not in known:
                self.fail(f"unknown top-level key or table {key!r}", key=key)
        paths = self.load_paths()
        global_ = self.load_global()
        ruleset = self.table("ruleset")
        self.check_keys(ruleset, {"shipped": bool, "correlation_keys": int,
                                  "correlation_ipv6_prefix": int, "time_zone": str}, "ruleset")
        time_zone = ruleset.get("time_zone")
        if isinstance(time_zone, str) and not _is_time_zone(time_zone):
            self.fail(f"ruleset.time_zone {time_zone!r} is not a time zone of the system's "
                      "database (e.g. \"Europe/Berlin\", \"UTC\")", "ruleset", key="time_zone")
        correlation = Correlation(ruleset.get("correlation_keys", Correlation.max_keys),
                                  ruleset.get("correlation_ipv6_prefix", Correlation.ipv6_prefix))
        if correlation.max_keys < 1:
            self.fail("ruleset.correlation_keys must be at least 1", "ruleset",
                      key="correlation_keys")
        if not 1 <= correlation.ipv6_prefix <= 128:
            self.fail("ruleset.correlation_ipv6_prefix must be 1-128", "ruleset",
                      key="correlation_ipv6_prefix")
        sources = tuple(s for s in (self.load_source(i, d)
                                    for i, d in enumerate(self.array("source"))) if s)
        integrity = self.load_integrity_entries()
        commands: dict[str, Command] = {}
        for index, data in enumerate(self.array("command")):
            command = self.load_command(index, data)
            if command is None:
                continue
            if command.name in commands:
                self.fail(f"command {command.name!r} is defined twice", "command", index, "name")
            commands[command.name] = command
        responses = tuple(r for r in (self.load_response(i, d, commands)
                                      for i, d in enumerate(self.array("active_response"))) if r)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            path=None if self.is_default else self.doc.path,
            paths=paths, global_=global_, sources=sources,
            commands=MappingProxyType(commands), active_responses=responses,
            shipped_ruleset=bool(ruleset.get("shipped", True)), correlation=correlation,
            fragments=getattr(self.doc, "fragments", ()), integrity=integrity,
            time_zone=time_zone if isinstance(time_zone, str) else None,
            texts=self.doc.texts,
        )

    def load_paths(self) -> Paths:
        data = self.table("paths")
        names = Paths.__dataclass_fields__
        self.check_keys(data, {name: str for name in names}, "paths")
        return Paths(**{k: self.path(v) for k, v in data.items()
                        if k in names and isinstance(v, str)})

    def load_global(self) -> GlobalSettings:
        data = self.table("global")
        self.check_keys(data, {"white_list": list, "max_blocks": int, "offender_forget": int,
                               "unblock_on_exit": bool}, "global")
        networks = []
        for entry in data.get("white_list", []) if isinstance(data.get("white_list"), list) else []:
            network = parse_network(entry)
            if network is None:
                self.fail(f"white_list entry {entry!r} is not an IP address or CIDR",
                          "global", key="white_list")
            else:
                networks.append(network)
        for key in ("max_blocks", "offender_forget"):
            if isinstance(data.get(key), int) and data[key] <= 0:
                self.fail(f"global.{key} must be positive", "global", key=key)
        defaults = GlobalSettings()
        return GlobalSettings(
            white_list=tuple(networks),
            max_blocks=data.get("max_blocks", defaults.max_blocks),
            offender_forget=data.get("offender_forget", defaults.offender_forget),
            unblock_on_exit=data.get("unblock_on_exit", defaults.unblock_on_exit),
        )

    def load_source(self, index: int, data: dict) -> Source | None:
        before = len(self.problems)
        self.check_keys(data, {"path": str, "journal": dict, "start_at": str,
                               "max_line_bytes": int, "poll": bool}, "source", index)
        has_path, has_journal = "path" in data, "journal" in data
        if has_path == has_journal:
            self.fail("a [[source]] needs exactly one of 'path' or 'journal'", "source", index)
        matches: tuple[str, ...] | None = None
        directory: str | None = None
        if isinstance(data.get("journal"), dict):
            journal = data["journal"]
            unknown = set(journal) - {"matches", "directory"}
            if unknown:
                self.fail(f"unknown key {sorted(unknown)[0]!r} in source.journal",
                          "source", index, "journal")
            if "directory" in journal:
                if isinstance(journal["directory"], str) and journal["directory"]:
                    directory = str(self.path(journal["directory"]))
                else:
                    self.fail("journal.directory must be a directory path",
                              "source", index, "journal")
            if shutil.which(JOURNALCTL) is None:
                self.fail(f"a journal source needs {JOURNALCTL}, which is not installed (not "
                          "found in PATH); install systemd's journalctl or follow a log file "
                          "instead", "source", index, "journal")
            raw = journal.get("matches", [])
            if not isinstance(raw, list) or not all(
                    isinstance(m, str) and regex.fullmatch(r"[A-Z0-9_]+=.*", m) for m in raw):
                self.fail("journal.matches must be a list of FIELD=value strings",
                          "source", index, "journal")
            else:
                matches = tuple(raw)
        if data.get("start_at", "recent") not in START_AT:
            self.fail("start_at must be \"recent\", \"end\" or \"beginning\"",
                      "source", index, "start_at")
        if isinstance(data.get("max_line_bytes"), int) and data["max_line_bytes"] < 256:
            self.fail("max_line_bytes must be at least 256", "source", index, "max_line_bytes")
        if len(self.problems) > before:
            return None
        path = data.get("path")
        return Source(
            path=str(self.path(path)) if path else None,
            journal_matches=matches,
            start_at=data.get("start_at", "recent"),
            max_line_bytes=data.get("max_line_bytes", 65_536),
            poll=data.get("poll", False),
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

    def load_integrity(self, index: int, data: dict) -> Integrity | None:
        before = len(self.problems)
        self.check_keys(data, {"paths": list, "recursive": bool, "ignore": list,
                               "realtime": bool, "scan_interval": (int, str), "checks": list,
                               "follow_symlinks": bool, "keep_copies": (int, str),
                               "max_eps": int}, "integrity", index)
        raw_paths = data.get("paths")
        paths: list[str] = []
        if not isinstance(raw_paths, list) or not raw_paths or not all(
                isinstance(p, str) and p.strip() and "\0" not in p for p in raw_paths):
            self.fail("an [[integrity]] table needs 'paths', a list of files or directories",
                      "integrity", index, "paths" if "paths" in data else None)
        else:
            for raw in raw_paths:
                path = os.path.normpath(str(self.path(raw)))
                if path == "/":
                    self.fail("watching / is not supported: name the directories to watch",
                              "integrity", index, "paths")
                elif path not in paths:
                    paths.append(path)
        ignore = data.get("ignore", [])
        if isinstance(ignore, list) and not all(isinstance(g, str) and g for g in ignore):
            self.fail("ignore must be a list of glob patterns", "integrity", index, "ignore")
        checks = data.get("checks", list(INTEGRITY_CHECKS))
        if isinstance(checks, list) and (not checks or not all(c in INTEGRITY_CHECKS
                                                               for c in checks)):
            self.fail("checks must be a list of " + ", ".join(INTEGRITY_CHECKS),
                      "integrity", index, "checks")
        interval = _duration(data.get("scan_interval", Integrity.scan_interval))
        if interval is None:
            self.fail("scan_interval must be a positive number of seconds, or e.g. \"30m\", "
                      "\"12h\", \"1d\"", "integrity", index, "scan_interval")
        keep = _size(data.get("keep_copies", 0))
        if keep is None or keep > MAX_KEEP_COPIES:
            self.fail("keep_copies must be a size such as \"1MB\" or \"512KB\" (at most "
                      "64MB), or 0", "integrity", index, "keep_copies")
        elif keep and isinstance(checks, list) and "sha256" not in checks:
            self.fail("keep_copies needs \"sha256\" among the checks (a copy is known by "
                      "its sha256)", "integrity", index, "keep_copies")
        if isinstance(data.get("max_eps"), int) and data["max_eps"] <= 0:
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

    def load_command(self, index: int, data: dict) -> Command | None:
        """A [[command]]: its own keys here; the action's options, and which targets it
        acts on, as the action's description (arguard.respond.actions) says."""
        before = len(self.problems)
        base_keys: dict[str, Any] = {"name": str, "action": str, "executable": str,
                                     "expect": str, "timeout_allowed": bool,
                                     "extra_args": list, "legacy_args": bool}
        self.check_keys({k: v for k, v in data.items() if k in base_keys}, base_keys,
                        "command", index)
        action = data.get("action")
        executable = data.get("executable")
        name = data.get("name")
        if not isinstance(name, str) or not regex.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            self.fail("command needs a 'name' of letters, digits, '-', '_' or '.'",
                      "command", index, "name" if "name" in data else None)
        described = None
        if (action is None) == (executable is None):
            self.fail("a [[command]] needs exactly one of 'action' (built-in) or 'executable'",
                      "command", index)
        elif executable is not None:
            described = action_type(EXECUTABLE_ACTION)
            action = EXECUTABLE_ACTION
        elif isinstance(action, str) and action in builtin_actions():
            described = action_type(action)
        elif isinstance(action, str):
            self.fail(f"unknown action {action!r}; built-in actions are "
                      + ", ".join(builtin_actions()), "command", index, "action")
        if isinstance(executable, str) and (
                "/" in executable or executable in (".", "..") or not executable.strip()):
            self.fail("executable must be a bare file name inside paths.ar_bin_dir "
                      "(no '/')", "command", index, "executable")
        expect = data.get("expect", described.default_expect if described else "srcip")
        if expect not in EXPECT_KINDS:
            self.fail(f"expect must be one of {', '.join(EXPECT_KINDS)}",
                      "command", index, "expect")
        elif described is not None and EXPECT_KINDS[expect] not in described.kinds:
            self.fail(f"expect {expect!r} gives targets of kind {EXPECT_KINDS[expect]}, but "
                      f"action {action!r} acts on targets of kind "
                      + " or ".join(described.kinds), "command", index, "expect")
        elif EXPECT_KINDS[expect] == "file" and data.get("timeout_allowed") is True:
            self.fail("a command that acts on files (expect = \"filename\") runs once per "
                      "alert: timeout_allowed is not supported", "command", index,
                      "timeout_allowed")
        extra_args = data.get("extra_args", [])
        if isinstance(extra_args, list) and not all(isinstance(a, str) for a in extra_args):
            self.fail("extra_args must be a list of strings", "command", index, "extra_args")
        given = {k: v for k, v in data.items() if k not in base_keys}
        if described is not None:
            for key, message in described.problems(action, given):
                self.fail(message, "command", index, key)
        if len(self.problems) > before or described is None:
            return None
        options = described.with_defaults(given)
        for option in described.options:
            if option.type.path:
                options[option.name] = str(self.path(options[option.name]))
        return Command(
            name=name, action=action, expect=expect,
            timeout_allowed=data.get("timeout_allowed", False), executable=executable,
            extra_args=tuple(extra_args), legacy_args=data.get("legacy_args", False),
            options=MappingProxyType(options),
        )

    def load_response(self, index: int, data: dict,
                      commands: Mapping[str, Command]) -> ActiveResponse | None:
        before = len(self.problems)
        self.check_keys(data, {"command": str, "location": str, "rules_id": (list, int),
                               "level": int, "rules_group": str, "timeout": int,
                               "repeated_offenders": list, "disabled": bool},
                        "active_response", index)
        command = data.get("command")
        if not isinstance(command, str):
            self.fail("active_response needs 'command'", "active_response", index)
        elif command not in commands:
            self.fail(f"active_response names unknown command {command!r}",
                      "active_response", index, "command")
        elif "timeout" in data and not commands[command].timeout_allowed:
            self.fail(f"timeout given but command {command!r} does not set timeout_allowed",
                      "active_response", index, "timeout")
        if data.get("location", "local") != "local":
            self.fail("location must be \"local\" (arguard runs on one host)",
                      "active_response", index, "location")
        rules_id = data.get("rules_id", [])
        rules_id = [rules_id] if isinstance(rules_id, int) else rules_id
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in rules_id):
            self.fail("rules_id must be rule ids (integers)", "active_response", index,
                      "rules_id")
        if not rules_id and "level" not in data and "rules_group" not in data:
            self.fail("active_response needs rules_id, level or rules_group",
                      "active_response", index)
        if isinstance(data.get("level"), int) and not 0 <= data["level"] <= 16:
            self.fail("level must be 0-16", "active_response", index, "level")
        if isinstance(data.get("timeout"), int) and data["timeout"] <= 0:
            self.fail("timeout must be a positive number of seconds",
                      "active_response", index, "timeout")
        offenders = data.get("repeated_offenders", [])
        if isinstance(offenders, list) and not all(
                isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in offenders):
            self.fail("repeated_offenders must be positive minutes",
                      "active_response", index, "repeated_offenders")
        if offenders and "timeout" not in data:
            self.fail("repeated_offenders needs a timeout", "active_response", index,
                      "repeated_offenders")
        if len(self.problems) > before or data.get("disabled", False):
            return None
        return ActiveResponse(
            command=command, location="local", rules_id=tuple(rules_id),
            level=data.get("level"), rules_group=data.get("rules_group"),
            timeout=data.get("timeout"), repeated_offenders=tuple(offenders),
        )


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def _duration(value: Any) -> int | None:
    """Seconds from a positive integer or `90s`, `30m`, `12h`, `1d`; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    found = regex.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value) if isinstance(value, str) else None
    if found is None or int(found[1]) <= 0:
        return None
    return int(found[1]) * _DURATION_UNITS[found[2] or "s"]


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
