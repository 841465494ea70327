"""`arguard import fail2ban`: a fail2ban configuration (filters and jails) → arguard decoders,
rules and configuration.

Each filter, with the options a jail gives it, becomes one root decoder that reads lines the
way fail2ban does (`input = "line"`, the date taken out with `cut`, `prefregex` as the
root's regex handing its `content` to the children, one child per `failregex`, `<F-MLFID>`
lines joined) and tries before the shipped decoders (`priority`), but takes only lines one
of its failregexes matches (`require_child`). Rules, counted from the filter's base id:

    base      level 0   every line the filter's decoder took
    base + 1  level 5   a failure with an IP address (not a `helper` line)
    base + 2  level 0   ignoreregex (below the failures)
    base + 3  level 10  the jail: maxretry failures within findtime from one address
    base + 4  level 3   a failure whose host is a name: reported, never blocked

A jail also becomes a `[[command]]` (its banaction), an `[[active_response]]` (bantime and the
increment as timeout and repeated_offenders), `[[source]]` tables (logpath globs, or the
journal with the filter's journalmatch for `backend = systemd`) and white-list entries
(ignoreip), in `conf.d/60-fail2ban.toml`.

Output: the enabled jails' (or the given filter files') decoders and rules in `decoders.d/`
and `rules.d/`; for a configuration directory, every filter of its filter.d with its
default options in `fail2ban-filters/` (to enable by copying into decoders.d and rules.d).
Everything is written to a temporary directory first and renamed to the output directory,
so a failed import leaves nothing half-written.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import tomli_w

from arguard.importers import f2bregex
from arguard.importers.f2bconf import (
    ConfError,
    FilterDefinition,
    JailDefinition,
    Text,
    option_list,
    read_filter,
    read_jails,
    split_option_lists,
)
from arguard.importers.f2btimes import FormulaError, offence_times, seconds
from arguard.progress import Progress

DEFAULT_BASE_ID = 100_000
IDS_PER_FILTER = 10
PRIORITY = 10
FRAGMENT = Path("conf.d") / "60-fail2ban.toml"
LIBRARY = "fail2ban-filters"
_JAIL_FILES = ("jail.conf", "jail.local")
_ANY_ADDRESS = ["0.0.0.0/0", "::/0"]
_TRUE = ("true", "yes", "1", "on")
# banactions arguard carries out with its firewall action (nftables, or ipset + iptables
# where the kernel has no nf_tables)
_FIREWALL_ACTIONS = ("iptables", "nftables", "firewallcmd", "shorewall", "ufw", "pf", "ipfw",
                     "bsd-ipfw", "npf", "apf", "csf", "ip6tables")
_ANY_LINE_BEFORE = "^.*\\n"
_ALL_PORTS = ("", "0:65535", "1:65535", "all", "any")
#: the service names fail2ban's jail.conf and common jails write in `port`, as IANA numbers
#: them (/etc/services); a name not here is looked up in the host's services database
SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
    "http": 80, "kerberos": 88, "pop3": 110, "nntp": 119, "ntp": 123, "imap": 143,
    "imap2": 143, "snmp": 161, "ldap": 389, "https": 443, "ssmtp": 465, "smtps": 465,
    "submissions": 465, "submission": 587, "ldaps": 636, "rsync": 873, "ftps-data": 989,
    "ftps": 990, "imaps": 993, "pop3s": 995, "socks": 1080, "openvpn": 1194, "mysql": 3306,
    "ms-wbt-server": 3389, "sieve": 4190, "postgresql": 5432, "sip": 5060, "sip-tls": 5061,
    "xmpp-client": 5222, "http-alt": 8080,
}
#: the most ports one command's block may name (arguard.respond.actions.base.PORTS)
MAX_PORTS = 15


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)   # not translated → exit 2
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)     # broken input → exit 1, no output
    filters_translated: list[str] = field(default_factory=list)
    filters_skipped: dict[str, str] = field(default_factory=dict)
    jails: list[str] = field(default_factory=list)

    def problem(self, where: object, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def note(self, where: object, message: str) -> None:
        self.notes.append(f"{where}: {message}")


@dataclass
class Translated:
    name: str                 # the filter, or the jail using it
    source: str               # which filter file (for the header of the written files)
    decoders: list[dict]
    rules: list[dict]
    base_id: int
    journalmatch: str | None = None

    @property
    def failure_rule(self) -> int:
        return self.base_id + 1


# --- filters ---------------------------------------------------------------------------------

def translate_filter(definition: FilterDefinition, name: str, base_id: int, report: Report,
                     use_dns: bool = True, extra_failregex: Text | None = None,
                     ) -> Translated | None:
    """One fail2ban filter → decoders and rules; None (reported) when none of its failregexes
    can be translated."""
    where = next((f for f in definition.files if f.stem == definition.name),
                 definition.files[0] if definition.files else definition.name)
    for note in definition.notes:
        if note not in report.notes:
            report.notes.append(note)
    failregex = definition.text("failregex") or Text.plain("")
    if extra_failregex is not None:
        failregex = Text(failregex.value + "\n" + extra_failregex.value,
                         failregex.origins + extra_failregex.origins)
    prefregex = definition.text("prefregex")
    prefix_groups: set[str] = set()
    root: dict = {"name": f"f2b-{name}", "priority": PRIORITY, "input": "line",
                  "require_child": True}
    if prefregex is not None and prefregex.value.strip():
        try:
            pattern = f2bregex.translate_regex(prefregex.value.strip(), use_dns)
        except f2bregex.Untranslatable as error:
            report.problem(prefregex.origins[0] or where, f"prefregex {error}; filter "
                           f"{definition.name} skipped")
            report.filters_skipped[definition.name] = f"prefregex {error}"
            return None
        prefix_groups = f2bregex.group_names(pattern)
        root["regex"] = pattern
        if "content" in prefix_groups:
            root["children_field"] = "content"
        else:
            root["prematch"] = f2bregex.without_groups(pattern)
    children: list[dict] = []
    groups = set(prefix_groups)
    for text, origin in failregex.lines():
        text = text.strip()
        if not text:
            continue
        if text.startswith(_ANY_LINE_BEFORE):
            text = "^" + text[len(_ANY_LINE_BEFORE):]
            report.note(origin or where, "failregex starts with ^.*\\n (any line before): "
                        "translated as its last line alone")
        try:
            pattern = f2bregex.translate_regex(text, use_dns)
        except f2bregex.Untranslatable as error:
            report.problem(origin or where, f"failregex {error}; left out: {text[:100]!r}")
            continue
        own = f2bregex.group_names(pattern)
        if not own & {"srcip", "fid", "mlfid"} and not prefix_groups & {"srcip", "fid",
                                                                       "mlfid"}:
            report.problem(origin or where, "failregex has no <HOST> (nor another failure "
                           f"id); left out: {text[:100]!r}")
            continue
        groups |= own
        child = {"name": f"f2b-{name}-{len(children) + 1}", "parent": root["name"]}
        prematch = f2bregex.gate(pattern)
        if prematch is not None:
            child["prematch"] = prematch
        children.append({**child, "regex": pattern})
    if not children:
        report.problem(where, f"no failregex of filter {definition.name} could be "
                       "translated; filter skipped")
        report.filters_skipped[definition.name] = "no failregex could be translated"
        return None
    if "mlfid" in groups:
        root["join"] = "mlfid"
    datepattern = definition.text("datepattern")
    cut = f2bregex.date_cut(datepattern.value if datepattern is not None else None)
    if cut is not None:
        root["cut"] = cut
    maxlines = definition.text("maxlines")
    lines = int(maxlines.value) if maxlines is not None and maxlines.value.strip().isdigit() \
        else 1
    if lines > 1:
        report.note(maxlines.origins[0] or where, f"maxlines = {lines}: arguard decodes one "
                    "line at a time (the failregexes spanning lines are reported above)")
    rules = _filter_rules(name, root["name"], base_id)
    ignoreregex = definition.text("ignoreregex")
    ignores = []
    for text, origin in (ignoreregex.lines() if ignoreregex is not None else []):
        if not text.strip():
            continue
        try:
            ignores.append(f2bregex.without_groups(
                f2bregex.translate_regex(text.strip(), use_dns)))
        except f2bregex.Untranslatable as error:
            report.problem(origin or where, f"ignoreregex {error}; left out: {text[:100]!r}")
    if ignores:
        rules.append({"id": base_id + 2, "level": 0, "if_sid": [base_id + 1, base_id + 4],
                      "regex": "(?-i)" + "|".join(f"(?:{p.removeprefix('(?-i)')})"
                                                  for p in ignores),
                      "description": f"fail2ban filter {definition.name}: ignoreregex",
                      "groups": ["fail2ban", definition.name]})
        report.note(ignoreregex.origins[0] or where, "ignoreregex is tested on the message "
                    "after the syslog header (fail2ban: on the line without its date)")
    journal = definition.text("journalmatch")
    if definition.name not in report.filters_translated:
        report.filters_translated.append(definition.name)
    return Translated(name, str(where), [root] + children, rules, base_id,
                      journal.value if journal is not None else None)


def _filter_rules(name: str, decoder: str, base_id: int) -> list[dict]:
    not_helper = {"helper": {"pattern": ".", "negate": True}}
    return [
        {"id": base_id, "level": 0, "decoded_as": decoder,
         "description": f"fail2ban {name}: a line its filter reads",
         "groups": ["fail2ban", name]},
        {"id": base_id + 1, "level": 5, "if_sid": [base_id], "srcip": _ANY_ADDRESS,
         "field": not_helper, "description": f"fail2ban {name}: failure",
         "groups": ["fail2ban", name, "fail2ban_failure"]},
        {"id": base_id + 4, "level": 3, "if_sid": [base_id],
         "field": {"srcip": ".", **not_helper},
         "description": f"fail2ban {name}: failure from a host name (reported, never "
                        "blocked: arguard does not resolve names from logs)",
         "groups": ["fail2ban", name, "fail2ban_host_name"]},
    ]


# --- jails -----------------------------------------------------------------------------------

@dataclass
class JailConfig:
    sources: list[dict] = field(default_factory=list)
    commands: list[dict] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)
    white_list: list[str] = field(default_factory=list)

    def as_toml(self) -> dict:
        data: dict = {}
        if self.white_list:
            data["global"] = {"white_list": self.white_list}
        for key, tables in (("source", self.sources), ("command", self.commands),
                            ("active_response", self.responses)):
            if tables:
                data[key] = tables
        return data


def _value(jail: JailDefinition, option: str, default: str | None = None) -> str | None:
    text = jail.options.get(option)
    return text.value.strip() if text is not None else default


def _where(jail: JailDefinition, option: str) -> object:
    """Where the jail's option was written (a value from [DEFAULT] names that line)."""
    return jail.set_at.get(option) or jail.origin or f"[{jail.name}]"


def translate_jail(jail: JailDefinition, translated: Translated, config: JailConfig,
                   report: Report) -> None:
    """The jail's ban rule (added to `translated`), command, response, sources, white list."""
    try:
        maxretry = int(_value(jail, "maxretry", "5"))
        findtime = seconds(_value(jail, "findtime", "10m"))
        bantime = seconds(_value(jail, "bantime", "10m"))
    except ValueError as error:
        report.problem(_where(jail, "bantime"), f"jail {jail.name}: {error}; jail skipped")
        return
    ban_rule = translated.failure_rule
    if maxretry >= 2:
        ban_rule = translated.base_id + 3
        translated.rules.append({
            "id": ban_rule, "level": 10, "if_matched_sid": translated.failure_rule,
            "frequency": maxretry, "timeframe": max(findtime, 1), "same_srcip": True,
            "description": f"fail2ban jail {jail.name}: {maxretry} failures within "
                           f"{findtime} s from one address",
            "groups": ["fail2ban", jail.name, "fail2ban_ban"]})
    command = _command(jail, config, report)
    if command is None:
        return
    response: dict = {"command": command["name"], "rules_id": [ban_rule]}
    if bantime > 0:
        response["timeout"] = bantime
        offenders = _repeated_offenders(jail, bantime, report)
        if offenders:
            response["repeated_offenders"] = offenders
    elif _value(jail, "bantime.increment", "false").lower() in _TRUE:
        report.note(_where(jail, "bantime"), f"jail {jail.name}: bantime {bantime} is "
                    "permanent; bantime.increment has nothing to increase")
    config.responses.append(response)
    _sources(jail, translated, config, report)
    _white_list(jail, config, report)
    report.jails.append(jail.name)


def _command(jail: JailDefinition, config: JailConfig, report: Report) -> dict | None:
    actions = split_option_lists(_value(jail, "action", "") or "")
    if not actions:
        report.problem(_where(jail, "action"), f"jail {jail.name}: no action; jail skipped")
        return None
    chosen: dict | None = None
    for text in actions:
        try:
            name, options = option_list(text)
        except ValueError as error:
            report.problem(_where(jail, "action"), f"jail {jail.name}: action {text!r}: "
                           f"{error}")
            continue
        table = _native_action(jail, name, options, report)
        if table is None:
            continue
        if chosen is not None:
            report.note(_where(jail, "action"), f"jail {jail.name}: action {name} also "
                        f"blocks; arguard blocks once, with {chosen['action']}")
            continue
        chosen = table
    if chosen is None:
        report.problem(_where(jail, "action"), f"jail {jail.name}: none of its actions "
                       "blocks in a way arguard can; jail skipped")
        return None
    suffix = jail.name[:22]  # an ipset set_name has room for 26 characters
    name = f"f2b-{suffix}"
    taken = {c["name"] for c in config.commands}
    number = 2
    while name in taken:
        name = f"f2b-{suffix[:19]}-{number}"
        number += 1
    chosen = {"name": name, **chosen}
    if chosen["action"] == "firewall":
        chosen["set_name"] = chosen["chain"] = name
    config.commands.append(chosen)
    return chosen


def _native_action(jail: JailDefinition, name: str, options: dict[str, str],
                   report: Report) -> dict | None:
    where = _where(jail, "action")
    base = name.removesuffix(".conf").removesuffix(".local")
    common = {"expect": "srcip", "timeout_allowed": True}
    if base.startswith(_FIREWALL_ACTIONS) or base == "iptables-ipset":
        table = {"action": "firewall", **common}
        port = options.get("port", "").strip()
        if "allports" not in base and port not in _ALL_PORTS:
            table.update(_ports(jail, base, port, options.get("protocol", "tcp"), report))
        if not base.startswith(("iptables", "ip6tables", "nftables")):
            report.note(where, f"jail {jail.name}: banaction {base} is carried out with "
                        "arguard's firewall action (nftables sets, or ipset where the kernel "
                        "has no nf_tables)")
        return table
    if base == "route":
        return {"action": "route", **common}
    if base == "hostsdeny":
        table = {"action": "hosts-deny", **common}
        if options.get("file"):
            table["path"] = options["file"]
        if options.get("daemon_list"):
            table["daemon"] = options["daemon_list"]
        return table
    if base == "dummy":
        report.note(where, f"jail {jail.name}: action dummy does nothing; left out")
        return None
    report.problem(where, f"jail {jail.name}: action {base} (mail, reporting or another "
                   "service) has no arguard counterpart; left out")
    return None


def _ports(jail: JailDefinition, base: str, port: str, protocol: str,
           report: Report) -> dict:
    """The `ports` and `protocol` options for fail2ban's `port` (`ssh`, `http,https`,
    `5060,5061`, `6000:6007`) and `protocol`; none, and a note (arguard then blocks the
    whole host), for what arguard cannot express."""
    where = _where(jail, "action")
    protocol = protocol.strip().lower()
    numbers: list[int] = []
    problem = None
    for item in (part.strip() for part in port.split(",")):
        found = _port_numbers(item, protocol)
        if found is None:
            problem = f"port {item!r} is neither a number, a range nor a known service name"
            break
        numbers.extend(number for number in found if number not in numbers)
    if problem is None and protocol not in ("tcp", "udp"):
        problem = f"protocol {protocol!r}: arguard limits a block to tcp or udp ports"
    if problem is None and len(numbers) > MAX_PORTS:
        problem = f"{len(numbers)} ports: arguard limits a block to {MAX_PORTS} ports at most"
    if problem is not None:
        report.note(where, f"jail {jail.name}: {base} blocks ports {port}; {problem}, so "
                    "arguard blocks the whole host")
        return {}
    return {"ports": numbers, "protocol": protocol}


def _port_numbers(item: str, protocol: str) -> list[int] | None:
    """The port numbers of one item of fail2ban's `port`: a number, a range `A:B`, or a
    service name (SERVICES, else the host's services database, read only); None when it
    is none of those."""
    if item.isdigit():
        return [int(item)] if 1 <= int(item) <= 65535 else None
    first, colon, last = item.partition(":")
    if colon:
        if not (first.isdigit() and last.isdigit()) or not 1 <= int(first) <= int(last) <= 65535:
            return None
        return list(range(int(first), int(last) + 1))
    if item.lower() in SERVICES:
        return [SERVICES[item.lower()]]
    try:
        return [socket.getservbyname(item, protocol if protocol in ("tcp", "udp") else "tcp")]
    except OSError:
        return None


def _repeated_offenders(jail: JailDefinition, bantime: int, report: Report) -> list[int]:
    if _value(jail, "bantime.increment", "false").lower() not in _TRUE:
        return []
    where = _where(jail, "bantime.increment")
    try:
        factor = float(_value(jail, "bantime.factor", "1") or 1)
        multipliers = [int(m) for m in (_value(jail, "bantime.multipliers", "") or "").split()]
        maxtime_text = _value(jail, "bantime.maxtime")
        maxtime = seconds(maxtime_text) if maxtime_text else None
        times = offence_times(bantime, factor, _value(jail, "bantime.formula"), multipliers,
                              maxtime)
    except (ValueError, FormulaError) as error:
        report.problem(where, f"jail {jail.name}: bantime.increment: {error}; the ban time "
                       "does not grow")
        return []
    minutes = [max(1, -(-t // 60)) for t in times]
    if any(t % 60 for t in times):
        report.note(where, f"jail {jail.name}: repeated-offender ban times are whole minutes "
                    "in arguard; rounded up")
    if _value(jail, "bantime.rndtime"):
        report.note(_where(jail, "bantime.rndtime"), f"jail {jail.name}: bantime.rndtime "
                    "(a random extra time) is not translated")
    if (_value(jail, "bantime.overalljails", "false") or "").lower() in _TRUE:
        report.note(_where(jail, "bantime.overalljails"), f"jail {jail.name}: "
                    "bantime.overalljails: arguard counts offences per command (this jail)")
    report.note(where, f"jail {jail.name}: offences are forgotten after global."
                "offender_forget seconds of quiet (fail2ban: its database's dbpurgeage)")
    return minutes


def _sources(jail: JailDefinition, translated: Translated, config: JailConfig,
             report: Report) -> None:
    backend = (_value(jail, "backend", "auto") or "auto")
    if backend.startswith("systemd"):
        match = _value(jail, "journalmatch") or translated.journalmatch
        if not match:
            report.problem(_where(jail, "backend"), f"jail {jail.name}: backend systemd "
                           "without a journalmatch; no source")
            return
        matches = _journal_matches(match, jail, report)
        if backend != "systemd":
            report.note(_where(jail, "backend"), f"jail {jail.name}: backend options "
                        f"{backend!r} are not translated; the system journal is read")
        source = {"journal": {"matches": matches}}
        if source not in config.sources:
            config.sources.append(source)
        return
    logpath = _value(jail, "logpath", "") or ""
    paths = [p.strip() for p in logpath.split("\n") if p.strip()]
    for entry in paths:
        path = entry.split()[0]
        if entry.split()[1:]:
            report.note(_where(jail, "logpath"), f"jail {jail.name}: logpath options "
                        f"{' '.join(entry.split()[1:])!r} (head/tail) are not translated")
        source = {"path": path}
        if source not in config.sources:
            config.sources.append(source)
    if not paths:
        report.problem(_where(jail, "logpath"), f"jail {jail.name}: no logpath; no source")


def _journal_matches(text: str, jail: JailDefinition, report: Report) -> list[str]:
    """fail2ban's `A + B + C` (alternatives) as one journalctl match list: matches on one
    field are alternatives for journalctl, so the field with the most alternatives is kept."""
    alternatives: list[list[str]] = [[]]
    for line in text.split("\n"):
        for term in line.split():
            if term == "+":
                alternatives.append([])
            else:
                alternatives[-1].append(term)
        if alternatives[-1]:
            alternatives.append([])
    alternatives = [a for a in alternatives if a]
    if len(alternatives) == 1:
        return alternatives[0]
    by_field: dict[str, list[str]] = {}
    for alternative in alternatives:
        if len(alternative) == 1:
            by_field.setdefault(alternative[0].split("=")[0], []).append(alternative[0])
    if not by_field:
        report.note(_where(jail, "journalmatch"), f"jail {jail.name}: journalmatch "
                    f"{text!r}: only its first alternative is read")
        return alternatives[0]
    kept = max(by_field.values(), key=len)
    if len(kept) < len(alternatives):
        report.note(_where(jail, "journalmatch"), f"jail {jail.name}: journalmatch "
                    f"{' + '.join(' '.join(a) for a in alternatives)}: arguard reads "
                    f"{' '.join(kept)} (one journalctl match list)")
    return kept


def _white_list(jail: JailDefinition, config: JailConfig, report: Report) -> None:
    where = _where(jail, "ignoreip")
    for entry in (_value(jail, "ignoreip", "") or "").replace(",", " ").split():
        if entry.startswith("file:"):
            report.problem(where, f"jail {jail.name}: ignoreip {entry}: address files are "
                           "not translated")
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
            addresses = [entry]
        except ValueError:
            addresses = _resolve(entry)
            if not addresses:
                report.problem(where, f"jail {jail.name}: ignoreip {entry!r} does not "
                               "resolve; left out")
                continue
            report.note(where, f"jail {jail.name}: ignoreip {entry} resolved now to "
                        f"{', '.join(addresses)} (arguard's white list holds addresses)")
        for address in addresses:
            if address not in config.white_list:
                config.white_list.append(address)
    if (_value(jail, "ignoreself", "true") or "").lower() in _TRUE:
        note = ("ignoreself: add this host's own addresses to global.white_list (arguard "
                "does not look them up)")
        if not any(note in n for n in report.notes):
            report.note(where, note)
    if _value(jail, "ignorecommand"):
        report.problem(_where(jail, "ignorecommand"), f"jail {jail.name}: ignorecommand is "
                       "not translated")


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


# --- the import ------------------------------------------------------------------------------

@dataclass
class _Inputs:
    config_dir: Path | None = None          # a whole fail2ban configuration
    jail_files: list[Path] = field(default_factory=list)
    filter_files: list[Path] = field(default_factory=list)


def _classify(paths: list[Path], jail_files: list[Path]) -> _Inputs:
    inputs = _Inputs(jail_files=list(jail_files))
    for path in paths:
        if path.is_dir():
            if (path / "filter.d").is_dir() or any((path / n).is_file() for n in _JAIL_FILES):
                inputs.config_dir = path
            elif path.name == "filter.d":
                inputs.config_dir = path.parent
            else:
                inputs.filter_files.extend(sorted(path.glob("*.conf")))
        elif path.name in _JAIL_FILES or path.parent.name == "jail.d":
            inputs.jail_files.append(path)
        else:
            inputs.filter_files.append(path)
    return inputs


def import_fail2ban(paths: list[Path], out_dir: Path, jail_files: list[Path] = (),
                    base_id: int = DEFAULT_BASE_ID, progress: IO[str] | None = None) -> Report:
    """Import and write; on an unreadable or broken input (report.errors) nothing is written.
    `progress`: where to draw a bar of the filters translated (only on a terminal)."""
    report = Report()
    inputs = _classify(paths, list(jail_files))
    live: list[Translated] = []
    library: list[Translated] = []
    config = JailConfig()
    bar = Progress("import fail2ban", stream=None)
    try:
        jails = _read_jails(inputs, report)
        live_filters = _live_filters(inputs, jails)
        filter_library = _filter_library(inputs.config_dir) if inputs.config_dir else []
        bar = Progress("import fail2ban", len(live_filters) + len(filter_library),
                       unit="filter", stream=progress)
        next_id = base_id
        for jail, filter_dir, filter_name, passed in bar.items(live_filters):
            definition = read_filter(filter_dir, filter_name, passed,
                                     jail.options if jail is not None else None)
            use_dns = _use_dns(jail, definition)
            extra = jail.options.get("failregex") if jail is not None else None
            translated = translate_filter(definition, jail.name if jail else filter_name,
                                          next_id, report, use_dns, extra)
            next_id += IDS_PER_FILTER
            if translated is None:
                continue
            if jail is not None:
                translate_jail(jail, translated, config, report)
            live.append(translated)
        for path in bar.items(filter_library):
            definition = read_filter(path.parent, path.stem, {})
            translated = translate_filter(definition, f"filter-{path.stem}", next_id,
                                          report, _use_dns(None, definition))
            next_id += IDS_PER_FILTER
            if translated is not None:
                library.append(translated)
    except ConfError as error:
        report.errors.append(str(error))
        return report
    finally:
        bar.close()
    _write(out_dir, live, library, config, report)
    return report


def _read_jails(inputs: _Inputs, report: Report) -> list[tuple[JailDefinition, Path]]:
    """(jail, the filter.d its filter comes from) for every enabled jail."""
    found: list[tuple[JailDefinition, Path]] = []
    if inputs.config_dir is not None:
        jails, notes = read_jails(inputs.config_dir, extra=inputs.jail_files)
        found += [(j, inputs.config_dir / "filter.d") for j in jails]
        report.notes.extend(notes)
        return found
    for path in inputs.jail_files:
        directory = path.parent.parent if path.parent.name == "jail.d" else path.parent
        jails, notes = read_jails(directory, [path])
        found += [(j, directory / "filter.d") for j in jails]
        report.notes.extend(notes)
    return found


def _live_filters(inputs: _Inputs, jails: list[tuple[JailDefinition, Path]],
                  ) -> list[tuple[JailDefinition | None, Path, str, dict[str, str]]]:
    """What goes to decoders.d/rules.d: each enabled jail's filter (with the options the jail
    gives it), and each filter file given that no jail uses."""
    given = {path.stem: path for path in inputs.filter_files}
    result: list[tuple[JailDefinition | None, Path, str, dict[str, str]]] = []
    used: set[str] = set()
    for jail, filter_dir in sorted(jails, key=lambda item: item[0].name):
        text = jail.options.get("filter")
        name, passed = option_list(text.value) if text is not None and text.value.strip() \
            else (jail.name, {})
        backend = (jail.options.get("backend") or Text.plain("auto")).value.strip()
        if backend.startswith("systemd") and "logtype" not in passed:
            passed = {**passed, "logtype": "journal"}
        directory = given[name].parent if name in given else filter_dir
        result.append((jail, directory, name, passed))
        used.add(name)
    for stem, path in sorted(given.items()):
        if stem not in used:
            result.append((None, path.parent, stem, {}))
    return result


def _filter_library(config_dir: Path) -> list[Path]:
    directory = config_dir / "filter.d"
    return sorted(p for p in directory.glob("*.conf")
                  if not p.name.endswith("-common.conf") and p.name != "common.conf")


def _use_dns(jail: JailDefinition | None, definition: FilterDefinition) -> bool:
    text = (jail.options.get("usedns") if jail is not None else None) or \
        definition.text("usedns")
    return text is None or text.value.strip().lower() != "no"


def _write(out_dir: Path, live: list[Translated], library: list[Translated],
           config: JailConfig, report: Report) -> None:
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for translated in live:
            stem = f"60-f2b-{translated.name}.toml"
            _write_toml(staging / "decoders.d" / stem, translated, {"decoder":
                                                                   translated.decoders})
            _write_toml(staging / "rules.d" / stem, translated, {"rule": translated.rules})
        for translated in library:
            stem = translated.name.removeprefix("filter-")
            _write_toml(staging / LIBRARY / f"{stem}.decoders.toml", translated,
                        {"decoder": translated.decoders})
            _write_toml(staging / LIBRARY / f"{stem}.rules.toml", translated,
                        {"rule": translated.rules})
        fragment = config.as_toml()
        if fragment:
            path = staging / FRAGMENT
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# From the fail2ban jails by `arguard import fail2ban`: arguard "
                            "reads conf.d/*.toml\n# beside arguard.toml (lists such as "
                            "white_list are added to its own).\n\n"
                            + tomli_w.dumps(fragment), encoding="utf-8")
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_toml(path: Path, translated: Translated, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Imported from fail2ban ({translated.source}) by arguard import "
                    f"fail2ban\n\n" + tomli_w.dumps(data), encoding="utf-8")


def _replace(staging: Path, out_dir: Path) -> None:
    """Put the staged output in place: renamed over a previous output (moved aside first,
    then removed), so the directory holds either the old output or the new one."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    os.rename(out_dir, old / "previous")
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
