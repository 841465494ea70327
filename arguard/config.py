"""Load and validate arguard.toml into frozen, typed configuration objects.

Every problem names the file and the line of the offending table or key. Loading collects
all problems before raising, so `arguard check-config` reports them together.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import regex

from arguard.configfiles import ConfigDocument
from arguard.durations import parse_duration
from arguard.errors import ConfigError, Place, Problem
from arguard.model import RuleInfo
from arguard.respond.actions import EXECUTABLE_ACTION, action_type, builtin_actions
from arguard.respond.targets import EXPECT_KINDS
from arguard.tomlfile import TomlFile

DEFAULT_CONFIG = Path("/etc/arguard/arguard.toml")
CONFIG_ENV = "ARGUARD_CONFIG"

JOURNALCTL = "journalctl"


@dataclass(frozen=True)
class Paths:
    state_dir: Path = Path("/var/lib/arguard")
    log_dir: Path = Path("/var/log/arguard")
    run_dir: Path = Path("/run/arguard")
    decoders_d: Path = Path("/etc/arguard/decoders.d")
    rules_d: Path = Path("/etc/arguard/rules.d")
    ar_bin_dir: Path = Path("/etc/arguard/active-response/bin")

    @property
    def database(self) -> Path:
        return self.state_dir / "arguard.db"

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


@dataclass(frozen=True)
class GlobalSettings:
    white_list: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_blocks: int = 100_000
    offender_forget: int = 86_400
    unblock_on_exit: bool = False


@dataclass(frozen=True)
class Source:
    path: str | None = None
    journal_matches: tuple[str, ...] | None = None
    start_at: str = "end"
    max_line_bytes: int = 65_536
    poll: bool = False
    journal_directory: str | None = None   # journalctl --directory (default: the system journal)

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path
        name = "journal:" + " ".join(self.journal_matches or ())
        return name if self.journal_directory is None else f"{name} @{self.journal_directory}"


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
class Config:
    path: Path | None
    paths: Paths
    global_: GlobalSettings
    sources: tuple[Source, ...]
    commands: Mapping[str, Command]
    active_responses: tuple[ActiveResponse, ...]
    shipped_ruleset: bool = True
    fragments: tuple[Path, ...] = ()   # the conf.d files merged into this configuration


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

    def duration(self, data: dict, key: str, table: str, index: int | None,
                 default: int | None) -> int | None:
        """A duration key (`600`, `"10m"`, `"1h30m"`, `"7d"`) in seconds; a value of the
        wrong type was reported by check_keys already."""
        value = data.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
            return default
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(f"{table}.{key} must be {error}", table, index, key)
            return default

    def path(self, value: str) -> Path:
        return (self.base / value) if not os.path.isabs(value) else Path(value)

    def load(self) -> Config:
        known = {"paths", "global", "ruleset", "source", "command", "active_response"}
        for key in self.doc.data:
            if key not in known:
                self.fail(f"unknown top-level key or table {key!r}", key=key)
        paths = self.load_paths()
        global_ = self.load_global()
        ruleset = self.table("ruleset")
        self.check_keys(ruleset, {"shipped": bool}, "ruleset")
        sources = tuple(s for s in (self.load_source(i, d)
                                    for i, d in enumerate(self.array("source"))) if s)
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
        responses = tuple(r for r in (self.load_response(i, d, commands, reported)
                                      for i, d in enumerate(self.array("active_response"))) if r)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            path=None if self.is_default else self.doc.path,
            paths=paths, global_=global_, sources=sources,
            commands=MappingProxyType(commands), active_responses=responses,
            shipped_ruleset=bool(ruleset.get("shipped", True)),
            fragments=getattr(self.doc, "fragments", ()),
        )

    def load_paths(self) -> Paths:
        data = self.table("paths")
        names = Paths.__dataclass_fields__
        self.check_keys(data, {name: str for name in names}, "paths")
        return Paths(**{k: self.path(v) for k, v in data.items()
                        if k in names and isinstance(v, str)})

    def load_global(self) -> GlobalSettings:
        data = self.table("global")
        self.check_keys(data, {"white_list": list, "max_blocks": int,
                               "offender_forget": (int, str), "unblock_on_exit": bool}, "global")
        networks = []
        for entry in data.get("white_list", []) if isinstance(data.get("white_list"), list) else []:
            network = parse_network(entry)
            if network is None:
                self.fail(f"white_list entry {entry!r} is not an IP address or CIDR",
                          "global", key="white_list")
            else:
                networks.append(network)
        if isinstance(data.get("max_blocks"), int) and data["max_blocks"] <= 0:
            self.fail("global.max_blocks must be positive", "global", key="max_blocks")
        defaults = GlobalSettings()
        return GlobalSettings(
            white_list=tuple(networks),
            max_blocks=data.get("max_blocks", defaults.max_blocks),
            offender_forget=self.duration(data, "offender_forget", "global", None,
                                          defaults.offender_forget),
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
        if data.get("start_at", "end") not in ("end", "beginning"):
            self.fail("start_at must be \"end\" or \"beginning\"", "source", index, "start_at")
        if isinstance(data.get("max_line_bytes"), int) and data["max_line_bytes"] < 256:
            self.fail("max_line_bytes must be at least 256", "source", index, "max_line_bytes")
        if len(self.problems) > before:
            return None
        path = data.get("path")
        return Source(
            path=str(self.path(path)) if path else None,
            journal_matches=matches,
            start_at=data.get("start_at", "end"),
            max_line_bytes=data.get("max_line_bytes", 65_536),
            poll=data.get("poll", False),
            journal_directory=directory,
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

    def load_response(self, index: int, data: dict, commands: Mapping[str, Command],
                      reported: set[str]) -> ActiveResponse | None:
        """An [[active_response]]. Each mistake is reported once: a key of the wrong type
        by check_keys only, a command whose own table is wrong at that table only."""
        table = "active_response"
        before = len(self.problems)
        self.check_keys(data, {"command": str, "location": str, "rules_id": (list, int),
                               "level": int, "rules_group": str, "timeout": (int, str),
                               "repeated_offenders": list, "disabled": bool}, table, index)
        command = data.get("command")
        timeout = self.duration(data, "timeout", table, index, None)
        if "command" not in data:
            self.fail("active_response needs 'command'", table, index)
        elif isinstance(command, str) and command not in commands and command not in reported:
            self.fail(f"active_response names unknown command {command!r}", table, index,
                      "command")
        elif isinstance(command, str) and command in commands and "timeout" in data \
                and not commands[command].timeout_allowed:
            self.fail(f"timeout given but command {command!r} does not set timeout_allowed",
                      table, index, "timeout")
        if data.get("location", "local") != "local":
            self.fail("location must be \"local\" (arguard runs on one host)",
                      table, index, "location")
        rules_id = data.get("rules_id", [])
        rules_id = [rules_id] if _is_type(rules_id, int) else rules_id
        if isinstance(rules_id, list) and not all(_is_type(r, int) for r in rules_id):
            self.fail("rules_id must be rule ids (integers)", table, index, "rules_id")
        if not data.get("rules_id") and "level" not in data and "rules_group" not in data:
            self.fail("active_response needs rules_id, level or rules_group", table, index)
        if _is_type(data.get("level"), int) and not 0 <= data["level"] <= 16:
            self.fail("level must be 0-16", table, index, "level")
        offenders = self.repeated_offenders(data, index)
        if offenders and "timeout" not in data:
            self.fail("repeated_offenders needs a timeout", table, index, "repeated_offenders")
        if len(self.problems) > before or data.get("disabled", False):
            return None
        places = {key: Place.of(self.doc.problem("", table, index, key))
                  for key in ("rules_id", "level", "rules_group") if key in data}
        return ActiveResponse(
            command=command, location="local", rules_id=tuple(rules_id),
            level=data.get("level"), rules_group=data.get("rules_group"),
            timeout=timeout, repeated_offenders=offenders, places=MappingProxyType(places),
        )

    def repeated_offenders(self, data: dict, index: int) -> tuple[int, ...]:
        """Minutes for the 2nd, 3rd, … offence: integers (minutes, as in Wazuh) or durations
        of whole minutes ("30m", "2h", "1d")."""
        entries = data.get("repeated_offenders", [])
        if not isinstance(entries, list):
            return ()
        minutes: list[int] = []
        for entry in entries:
            if _is_type(entry, int) and entry > 0:
                minutes.append(entry)
                continue
            try:
                seconds = parse_duration(entry) if isinstance(entry, str) else 0
            except ValueError:
                seconds = 0
            if seconds <= 0 or seconds % 60:
                self.fail("repeated_offenders must be positive minutes (30) or durations of "
                          f"whole minutes (\"30m\", \"2h\"), not {entry!r}",
                          "active_response", index, "repeated_offenders")
                return ()
            minutes.append(seconds // 60)
        return tuple(minutes)


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
