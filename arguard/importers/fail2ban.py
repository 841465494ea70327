"""`arguard import fail2ban`: fail2ban filters (and jails) → arguard decoders, rules, config.

A filter becomes one root decoder (program name from `_daemon`) with one child per
`failregex` line, and four rules counted from a base id: the filter's root (level 0), its
failure (level 5, any decoded address), the `ignoreregex` exception (level 0 below the
failure) and, with a jail, the ban rule (`frequency = maxretry`, `timeframe = findtime`,
same source) bound to an active response of `bantime` seconds.

Translation:
- `%(name)s` is interpolated from [Definition], [Init], [DEFAULT] and the `before`/`after`
  includes, as fail2ban does; `mode` picks among the filter's alternatives the same way.
- `%(__prefix_line)s` is empty: arguard matches failregex on the message *after* the syslog
  header its predecoder has removed (fail2ban's prefix is what matches that header).
- `<HOST>`, `<ADDR>`, `<IP4>`, `<IP6>` capture `srcip` (IP literals only: a host name in a
  log line is never resolved); `<F-USER>`/`<F-ALT_USER>` → `srcuser`, `<F-ID>` → `id`,
  other `<F-NAME>` → the lower-cased name. `prefregex` with `<F-CONTENT>` wraps each failregex.
- Patterns stay case-sensitive (`(?-i)`), as Python's `re` in fail2ban.
- Not translatable, reported per line and left out: `<SKIPLINES>` multi-line regexes,
  `<F-NOFAIL>`/`<F-MLFID>`/`<F-MLFFORGET>`, `<DNS>`; `datepattern` is not needed (the
  predecoder reads the time) and is reported as ignored.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path

import regex
import tomli_w

ADDRESS = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*[0-9A-Fa-f])"
BUILTINS = {"__prefix_line": "", "__prefix_line_sl": "", "__prefix_line_ml1": "",
            "__prefix_line_ml2": "", "__prefix_line_dsl": ""}
DEFAULT_BASE_ID = 100_000
_INTERPOLATION = re.compile(r"%\((\w+)\)s")
_TAG = re.compile(r"<(/?)(F-[A-Z_]+|HOST|ADDR|IP4|IP6|DNS|SKIPLINES|CIDR|SUBNET)>")
_OPTION_TAG = re.compile(r"<([\w-]+)>")
_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def note(self, where: str, message: str) -> None:
        self.notes.append(f"{where}: {message}")


@dataclass(frozen=True)
class Jail:
    name: str
    filter: str
    maxretry: int
    findtime: int
    bantime: int
    ignoreip: tuple[str, ...]


def _read(path: Path, seen: set[Path], report: Report) -> configparser.RawConfigParser:
    """The filter with its includes merged: `before` files first, then the filter (and its
    .local), then `after` files, later definitions winning as in fail2ban."""
    own = _parser()
    own.read([path, path.with_suffix(".local")], encoding="utf-8")
    includes = dict(own.items("INCLUDES", raw=True)) if own.has_section("INCLUDES") else {}
    merged = _parser()
    for key in ("before", "after"):
        if key == "after":
            merged.read_dict(_as_dict(own))
        for name in (includes.get(key) or "").split():
            include = (path.parent / name).resolve()
            if include in seen:
                continue
            seen.add(include)
            if include.exists():
                merged.read_dict(_as_dict(_read(include, seen, report)))
            else:
                report.note(str(path), f"include {name} not found; arguard's own definitions "
                                       f"of the common prefix variables are used")
    return merged


def _parser() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # option names keep their case
    return parser


def _as_dict(parser: configparser.RawConfigParser) -> dict[str, dict[str, str]]:
    result = {section: dict(parser.items(section, raw=True)) for section in parser.sections()}
    if parser.defaults():
        result["DEFAULT"] = dict(parser.defaults())
    return result


def _variables(parser: configparser.RawConfigParser, overrides: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = dict(parser.defaults())
    for section in ("Init", "Definition"):
        if parser.has_section(section):
            values.update(parser.items(section, raw=True))
    values.update(overrides)
    values.update(BUILTINS)
    return values


def _expand(text: str, values: dict[str, str], where: str, report: Report,
            depth: int = 0) -> str:
    if depth > 20:
        report.problem(where, "interpolation too deep (a cycle?)")
        return text

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            report.problem(where, f"%({name})s is not defined")
            return ""
        return _expand(values[name], values, where, report, depth + 1)

    expanded = _INTERPOLATION.sub(replace, text)
    # fail2ban's own `<name>` substitution of options (e.g. `<mdre-<mode>>`), innermost first
    for _ in range(10):
        substituted = _OPTION_TAG.sub(
            lambda m: _expand(values[m.group(1)], values, where, report, depth + 1)
            if m.group(1) in values and not _TAG.fullmatch(m.group(0)) else m.group(0),
            expanded)
        if substituted == expanded:
            break
        expanded = substituted
    return expanded


def translate_failregex(text: str, where: str, report: Report) -> str | None:
    """A fail2ban regex with its tags → an arguard pattern; None when not translatable."""
    unsupported = {"SKIPLINES", "DNS", "F-NOFAIL", "F-MLFID", "F-MLFFORGET", "CIDR", "SUBNET"}

    def replace(match: re.Match) -> str:
        closing, tag = match.groups()
        if tag in unsupported:
            raise _Untranslatable(f"<{tag}> is not supported")
        if tag in ("HOST", "ADDR", "IP4", "IP6"):
            return rf"\[?(?P<srcip>{ADDRESS})\]?"
        if closing:
            return ")"
        name = {"F-USER": "srcuser", "F-ALT_USER": "srcuser", "F-ID": "id",
                "F-CONTENT": "content"}.get(tag, tag[2:].lower())
        return f"(?P<{name}>"

    try:
        translated = _TAG.sub(replace, text)
    except _Untranslatable as error:
        report.problem(where, f"{error}; failregex left out: {text!r}")
        return None
    translated = "(?-i)" + translated
    try:
        regex.compile(translated)
    except regex.error as error:
        report.problem(where, f"does not compile after translation ({error}): {text!r}")
        return None
    return translated


class _Untranslatable(Exception):
    pass


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def seconds(text: str) -> int:
    """fail2ban durations: `600`, `10m`, `1h`, `2d`, `1w` (sums like `1h 30m` too)."""
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    total = sum(int(number) * units[unit] for number, unit in _DURATION.findall(text))
    if not total and text.strip() not in ("0", ""):
        raise ValueError(f"not a duration: {text!r}")
    return total


def read_jails(path: Path, report: Report) -> list[Jail]:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    defaults = parser.defaults()
    jails = []
    for name in parser.sections():
        section = parser[name]
        if section.get("enabled", defaults.get("enabled", "false")).lower() not in ("true", "1", "yes"):
            continue
        try:
            jails.append(Jail(
                name=name, filter=section.get("filter", name).split("[")[0].strip(),
                maxretry=int(section.get("maxretry", defaults.get("maxretry", "5"))),
                findtime=seconds(section.get("findtime", defaults.get("findtime", "10m"))),
                bantime=seconds(section.get("bantime", defaults.get("bantime", "10m"))),
                ignoreip=tuple(section.get("ignoreip", defaults.get("ignoreip", "")).split())))
        except ValueError as error:
            report.problem(f"{path} [{name}]", str(error))
    return jails


@dataclass
class Imported:
    decoders: dict
    rules: dict
    failure_rule: int


def import_filter(path: Path, base_id: int, report: Report,
                  overrides: dict[str, str] | None = None) -> Imported | None:
    name = path.stem
    parser = _read(path, {path.resolve()}, report)
    if not parser.has_section("Definition"):
        report.problem(str(path), "no [Definition] section")
        return None
    values = _variables(parser, overrides or {})
    where = f"{path} [Definition]"
    if "datepattern" in values:
        report.note(where, "datepattern ignored: the predecoder reads each line's time")
    failregex = _lines(_expand(values.get("failregex", ""), values, where, report))
    ignoreregex = _lines(_expand(values.get("ignoreregex", ""), values, where, report))
    prefregex = _expand(values.get("prefregex", ""), values, where, report).strip()
    daemon = _expand(values.get("_daemon", ""), values, where, report).strip()
    translated = []
    for number, line in enumerate(failregex, 1):
        if prefregex:
            content = line[1:] if line.startswith("^") else line
            line = re.sub(r"<F-CONTENT>.*?</F-CONTENT>", lambda _: content, prefregex)
        pattern = translate_failregex(line, f"{where} failregex line {number}", report)
        if pattern is not None:
            translated.append(pattern)
    if not translated:
        report.problem(where, "no failregex could be translated; filter skipped")
        return None
    ignores = [p for n, line in enumerate(ignoreregex, 1)
               if (p := translate_failregex(line, f"{where} ignoreregex line {n}", report))]
    root: dict = {"name": f"f2b-{name}"}
    if daemon:
        root["program_name"] = f"(?-i)^(?:{daemon})$"
    else:
        root["prematch"] = "|".join(f"(?:{_without_groups(p)})" for p in translated)
    decoders = [root] + [{"name": f"f2b-{name}-{i}", "parent": f"f2b-{name}", "regex": p}
                         for i, p in enumerate(translated, 1)]
    rules = [
        {"id": base_id, "level": 0, "decoded_as": f"f2b-{name}",
         "description": f"fail2ban filter {name}: lines of its program",
         "groups": ["fail2ban", name]},
        {"id": base_id + 1, "level": 5, "if_sid": [base_id], "srcip": ["0.0.0.0/0", "::/0"],
         "description": f"fail2ban filter {name}: failure",
         "groups": ["fail2ban", name, "authentication_failed"]},
    ]
    if ignores:
        rules.append({"id": base_id + 2, "level": 0, "if_sid": [base_id + 1],
                      "regex": "|".join(f"(?:{p})" for p in ignores),
                      "description": f"fail2ban filter {name}: ignoreregex",
                      "groups": ["fail2ban", name]})
    return Imported({"decoder": decoders}, {"rule": rules}, base_id + 1)


def _config_fragment(config: dict) -> str:
    """The jails' tables, each under its own header, so that they can be appended to (or
    merged into) an arguard.toml whatever table it ends with."""
    parts = ["# From the fail2ban jails: merge these tables into arguard.toml (an existing\n"
             "# [global] white_list gets these entries added).\n",
             "[global]\n" + tomli_w.dumps(config["global"])]
    for key in ("command", "active_response"):
        parts.extend(f"[[{key}]]\n" + tomli_w.dumps(table) for table in config[key])
    return "\n".join(parts)


def _without_groups(pattern: str) -> str:
    return re.sub(r"\(\?P<\w+>", "(?:", pattern.removeprefix("(?-i)"))


def import_fail2ban(files: list[Path], out_dir: Path, jail_file: Path | None,
                    base_id: int = DEFAULT_BASE_ID) -> Report:
    report = Report()
    jails = read_jails(jail_file, report) if jail_file is not None else []
    (out_dir / "decoders.d").mkdir(parents=True, exist_ok=True)
    (out_dir / "rules.d").mkdir(parents=True, exist_ok=True)
    config: dict = {"global": {"white_list": []}, "command": [], "active_response": []}
    for index, path in enumerate(files):
        first_id = base_id + 10 * index
        imported = import_filter(path, first_id, report)
        if imported is None:
            continue
        for jail in (j for j in jails if j.filter == path.stem):
            ban_id = first_id + 3
            imported.rules["rule"].append({
                "id": ban_id, "level": 10, "if_matched_sid": imported.failure_rule,
                "frequency": jail.maxretry, "timeframe": jail.findtime, "same_srcip": True,
                "description": f"fail2ban jail {jail.name}: {jail.maxretry} failures in "
                               f"{jail.findtime} s", "groups": ["fail2ban", jail.name]})
            config["command"].append({"name": f"f2b-{jail.name}", "action": "ipset",
                                      "expect": "srcip", "timeout_allowed": True})
            response = {"command": f"f2b-{jail.name}", "rules_id": [ban_id]}
            if jail.bantime > 0:
                response["timeout"] = jail.bantime
            config["active_response"].append(response)
            config["global"]["white_list"].extend(
                ip for ip in jail.ignoreip if ip not in config["global"]["white_list"])
        stem = f"60-f2b-{path.stem}.toml"
        (out_dir / "decoders.d" / stem).write_text(
            f"# Imported from fail2ban filter {path.name} by arguard import fail2ban\n\n"
            + tomli_w.dumps(imported.decoders))
        (out_dir / "rules.d" / stem).write_text(
            f"# Imported from fail2ban filter {path.name} by arguard import fail2ban\n\n"
            + tomli_w.dumps(imported.rules))
    if config["command"]:
        (out_dir / "arguard-fail2ban.toml").write_text(_config_fragment(config))
    return report
