"""Rule files: parsing, validation and building the rule tree (Wazuh 4.x semantics)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from arguard.config import parse_network
from arguard.errors import ConfigError, Problem
from arguard.model import RuleInfo
from arguard.patterns import Condition, parse_condition
from arguard.ruleset.clock import DayWindow, EventClock, TimeWindow, parse_time, parse_weekday
from arguard.ruleset.compiled import COMPILED_RULES
from arguard.ruleset.lists import LOOKUPS, VALUE_LOOKUPS, ListFiles, ListLookup
from arguard.syscheck import RULE_FIELD_ALIASES
from arguard.tomlfile import TomlFile

# Decoded fields a rule may test by name at the top level of a [[rule]] table.
FIELD_KEYS = ("url", "status", "action", "protocol", "extra_data", "srcport", "dstport",
              "system_name")
PREDECODED_KEYS = ("program_name", "hostname", "location")
# Correlation keys: `same_X` / `different_X` name these event values.
CORRELATION_FIELDS = ("srcip", "dstip", "srcport", "dstport", "user", "id", "url", "location",
                      "protocol", "action", "status")
DEFAULT_TIMEFRAME = 360
# What a `list` condition may look a value up by, besides any decoded field's name: the
# user (srcuser, else dstuser, as Wazuh's lists read it) and the header parts.
LIST_HEADER_FIELDS = ("hostname", "program_name")
LIST_FIELD_ALIASES = {"data": "extra_data", "systemname": "system_name"}


@dataclass(slots=True)
class Rule:
    id: int
    level: int
    file: Path
    line: int | None
    order: int
    description: str = ""
    groups: tuple[str, ...] = ()
    mitre: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    if_sid: tuple[int, ...] = ()
    if_group: str | None = None
    if_level: int | None = None
    if_matched_sid: int | None = None
    if_matched_group: str | None = None
    decoded_as: str | None = None
    category: str | None = None
    match: Condition | None = None
    regex: Condition | None = None
    user: Condition | None = None
    field_conditions: tuple[tuple[str, Condition], ...] = ()
    predecoded_conditions: tuple[tuple[str, Condition], ...] = ()
    address_conditions: tuple[tuple[str, "AddressCondition"], ...] = ()
    compiled_rule: str | None = None
    frequency: int | None = None
    timeframe: int = DEFAULT_TIMEFRAME
    same: tuple[str, ...] = ()
    different: tuple[str, ...] = ()
    ignore: int = 0
    noalert: bool = False
    overwrite: bool = False
    maxsize: int | None = None
    lists: tuple[ListLookup, ...] = ()
    time: TimeWindow | None = None
    weekday: DayWindow | None = None
    if_fts: bool = False
    #: a frequency rule's count restarts after it fires; not for `if_matched_sid` without
    #: `frequency` ("after that rule for this key within timeframe": every such event fires)
    restarts: bool = True
    #: "fleet": a frequency rule counting the events of every host of the fleet
    scope: str = "local"
    children: list["Rule"] = field(default_factory=list)
    info: RuleInfo | None = None

    @property
    def is_root(self) -> bool:
        return not (self.if_sid or self.if_group or self.if_level is not None
                    or self.if_matched_sid is not None or self.if_matched_group)

    @property
    def alerts(self) -> bool:
        return self.level > 0 and not self.noalert


@dataclass(frozen=True, slots=True)
class AddressCondition:
    """`srcip = ["10.0.0.0/8", "!10.1.0.0/16"]`: inside some positive entry (or there is
    none) and inside no negated entry."""

    include: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    exclude: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def holds(self, value: str | None) -> bool:
        if value is None:
            return False
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        if self.include and not any(address in net for net in self.include
                                    if net.version == address.version):
            return False
        return not any(address in net for net in self.exclude if net.version == address.version)


@dataclass
class RuleTree:
    rules: dict[int, Rule]
    roots: list[Rule]
    # rules counting events (if_matched_sid / if_matched_group), by the rule id or group watched
    watchers_by_sid: dict[int, list[Rule]]
    watchers_by_group: dict[str, list[Rule]]
    #: the list files the rules read (a change to one is a change to the ruleset)
    list_files: tuple[Path, ...] = ()


_SIMPLE_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": int, "level": int, "description": str, "groups": list, "mitre": list, "options": list,
    "if_sid": (int, list), "if_group": str, "if_level": int, "if_matched_sid": int,
    "if_matched_group": str, "decoded_as": str, "category": str, "compiled_rule": str,
    "frequency": int, "timeframe": int, "ignore": int, "noalert": bool, "overwrite": bool,
    "maxsize": int, "list": (dict, list), "time": str, "weekday": str, "if_fts": bool,
    "scope": str,
    "srcip": (str, list), "dstip": (str, list), "field": dict, "same_field": list,
    "different_field": list,
}
_CONDITION_KEYS = ("match", "regex", "user") + FIELD_KEYS + PREDECODED_KEYS


def _allowed_keys() -> set[str]:
    keys = set(_SIMPLE_KEYS) | set(_CONDITION_KEYS)
    keys |= {f"same_{name}" for name in CORRELATION_FIELDS}
    keys |= {f"different_{name}" for name in CORRELATION_FIELDS}
    return keys


_ALLOWED = _allowed_keys()


def load_rule_files(paths: list[Path], lists_dir: Path | None = None,
                    time_zone: tzinfo | None = None) -> RuleTree:
    """`lists_dir`: where `list` files named by a relative path are; `time_zone`: of the
    `time` and `weekday` conditions (None: the host's)."""
    problems: list[Problem] = []
    environment = _Environment(ListFiles(lists_dir), EventClock(time_zone))
    rules: dict[int, Rule] = {}
    order = 0
    for path in paths:
        try:
            doc = TomlFile.load(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for key in sorted(set(doc.data) - {"rule"}):
            problems.append(doc.problem(f"unknown top-level key {key!r} (expected [[rule]] tables)",
                                        key=key))
        entries = doc.data.get("rule", [])
        if not isinstance(entries, list):
            problems.append(doc.problem("rules must be written as [[rule]] tables", key="rule"))
            continue
        for index, data in enumerate(entries):
            rule = _parse_rule(doc, index, data, order, problems, environment)
            order += 1
            if rule is None:
                continue
            existing = rules.get(rule.id)
            if existing is not None:
                if not rule.overwrite:
                    problems.append(Problem(
                        rule.file, rule.line,
                        f"rule {rule.id} is already defined at {existing.file}:{existing.line}; "
                        "set overwrite = true to replace it"))
                    continue
                rule.order = existing.order
            rules[rule.id] = rule
    if not problems:
        tree = _build_tree(rules, problems)
        if not problems:
            tree.list_files = tuple(environment.lists.loaded)
            return tree
    raise ConfigError(problems)


@dataclass(frozen=True)
class _Environment:
    """What one load of rule files shares: its list files and its clock."""

    lists: ListFiles
    clock: EventClock


def _parse_rule(doc: TomlFile, index: int, data: dict, order: int,
                problems: list[Problem], environment: _Environment) -> Rule | None:
    before = len(problems)

    def fail(message: str, key: str | None = None) -> None:
        problems.append(doc.problem(message, "rule", index, key))

    for key, value in data.items():
        if key not in _ALLOWED:
            fail(f"unknown key {key!r} in [[rule]]", key)
            continue
        expected = _SIMPLE_KEYS.get(key)
        if key.startswith(("same_", "different_")) and key not in _SIMPLE_KEYS:
            expected = bool
        if expected is not None and (not isinstance(value, expected)
                                     or (isinstance(value, bool) and expected is int)):
            fail(f"rule.{key} has the wrong type", key)
    rule_id = data.get("id")
    if isinstance(rule_id, (str, dict)):
        fail("rule 'id' is the rule's number; to test the decoded `id` field (e.g. an HTTP "
             "status) write field.id = '…'", "id")
        return None
    if not isinstance(rule_id, int) or isinstance(rule_id, bool) or not 1 <= rule_id <= 999_999:
        fail("rule needs an 'id' between 1 and 999999", "id" if "id" in data else None)
        return None
    level = data.get("level")
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 16:
        fail(f"rule {rule_id}: 'level' must be an integer 0-16", "level" if "level" in data else None)
    for key in ("groups", "mitre", "options", "same_field", "different_field"):
        if isinstance(data.get(key), list) and not all(isinstance(v, str) for v in data[key]):
            fail(f"rule {rule_id}: {key} must be a list of strings", key)
    if_sid = data.get("if_sid", [])
    if_sid = [if_sid] if isinstance(if_sid, int) else if_sid
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in if_sid):
        fail(f"rule {rule_id}: if_sid must be rule ids", "if_sid")
        if_sid = []
    conditions: dict[str, Condition] = {}
    for key in _CONDITION_KEYS:
        if key in data:
            condition = parse_condition(doc, "rule", index, key, data[key], problems)
            if condition is not None:
                conditions[key] = condition
    field_conditions = [(key, conditions[key]) for key in FIELD_KEYS if key in conditions]
    extra_fields = data.get("field", {})
    if isinstance(extra_fields, dict):
        for name, value in extra_fields.items():
            condition = parse_condition(doc, "rule", index, f"field.{name}", value, problems)
            decoded = _decoded_field_name(name)
            if decoded is None:
                fail(f"rule {rule_id}: unknown field {name!r}; the syscheck alert fields are "
                     + ", ".join(sorted(RULE_FIELD_ALIASES)), "field")
            elif condition is not None:
                field_conditions.append((decoded, condition))
    address_conditions = []
    for key in ("srcip", "dstip"):
        if key in data and isinstance(data[key], (str, list)):
            parsed = _parse_addresses(data[key])
            if parsed is None:
                fail(f"rule {rule_id}: {key} entries must be addresses or CIDRs "
                     "(optionally starting with '!')", key)
            else:
                address_conditions.append((key, parsed))
    compiled = data.get("compiled_rule")
    if compiled is not None and compiled not in COMPILED_RULES:
        fail(f"rule {rule_id}: unknown compiled_rule {compiled!r}; known: "
             + ", ".join(sorted(COMPILED_RULES)), "compiled_rule")
    frequency = data.get("frequency")
    matched = "if_matched_sid" in data or "if_matched_group" in data
    if frequency is not None and not matched:
        fail(f"rule {rule_id}: frequency needs if_matched_sid or if_matched_group", "frequency")
    restarts = True
    if matched and frequency is None:
        frequency, restarts = 2, False   # this event and one earlier one, every time
    if isinstance(frequency, int) and frequency < 2:
        fail(f"rule {rule_id}: frequency must be at least 2", "frequency")
    if "timeframe" in data and frequency is None:
        fail(f"rule {rule_id}: timeframe without frequency", "timeframe")
    for key in ("timeframe", "ignore"):
        if isinstance(data.get(key), int) and data[key] < (1 if key == "timeframe" else 0):
            fail(f"rule {rule_id}: {key} must be positive", key)
    same = [name for name in CORRELATION_FIELDS if data.get(f"same_{name}") is True]
    same += [f"field:{_decoded_field_name(name) or name}" for name in data.get("same_field", [])
             if isinstance(name, str)]
    different = [name for name in CORRELATION_FIELDS if data.get(f"different_{name}") is True]
    different += [f"field:{_decoded_field_name(name) or name}"
                  for name in data.get("different_field", []) if isinstance(name, str)]
    if (same or different) and frequency is None:
        fail(f"rule {rule_id}: same_*/different_* need frequency")
    scope = data.get("scope", "local")
    if scope not in ("local", "fleet"):
        fail(f"rule {rule_id}: scope must be \"local\" or \"fleet\"", "scope")
    elif scope == "fleet" and frequency is None:
        fail(f"rule {rule_id}: scope = \"fleet\" is for frequency rules (it counts their "
             "events across the fleet)", "scope")
    elif scope == "fleet" and different:
        fail(f"rule {rule_id}: scope = \"fleet\" does not support different_* (only the "
             "rule, its key and the time travel between hosts)", "scope")
    lists = _parse_lists(doc, index, rule_id, data.get("list"), problems, environment.lists)
    windows: dict[str, TimeWindow | DayWindow] = {}
    for key, parse in (("time", parse_time), ("weekday", parse_weekday)):
        if isinstance(data.get(key), str):
            try:
                windows[key] = parse(data[key], environment.clock)
            except ValueError as exc:
                fail(f"rule {rule_id}: {exc}", key)
    if len(problems) > before:
        return None
    return Rule(
        id=rule_id, level=level, file=doc.path, line=doc.table_line("rule", index), order=order,
        description=data.get("description", ""), groups=tuple(data.get("groups", ())),
        mitre=tuple(data.get("mitre", ())), options=tuple(data.get("options", ())),
        if_sid=tuple(if_sid), if_group=data.get("if_group"), if_level=data.get("if_level"),
        if_matched_sid=data.get("if_matched_sid"), if_matched_group=data.get("if_matched_group"),
        decoded_as=data.get("decoded_as"), category=data.get("category"),
        match=conditions.get("match"), regex=conditions.get("regex"), user=conditions.get("user"),
        field_conditions=tuple(field_conditions),
        predecoded_conditions=tuple((k, conditions[k]) for k in PREDECODED_KEYS if k in conditions),
        address_conditions=tuple(address_conditions), compiled_rule=compiled,
        frequency=frequency, timeframe=data.get("timeframe", DEFAULT_TIMEFRAME),
        same=tuple(same), different=tuple(different), ignore=data.get("ignore", 0),
        noalert=data.get("noalert", False), overwrite=data.get("overwrite", False),
        maxsize=data.get("maxsize"), lists=lists, time=windows.get("time"),
        weekday=windows.get("weekday"), if_fts=data.get("if_fts", False), restarts=restarts,
        scope=scope,
    )


_LIST_KEYS = {"field": str, "lookup": str, "file": str, "check_value": str}


def _parse_lists(doc: TomlFile, index: int, rule_id: int, value: dict | list | None,
                 problems: list[Problem], files: ListFiles) -> tuple[ListLookup, ...]:
    """`list = { field = "srcip", lookup = "address_match_key", file = "blocked" }`, or a list
    of such tables (all must hold)."""
    if value is None:
        return ()

    def fail(message: str) -> None:
        problems.append(doc.problem(f"rule {rule_id}: {message}", "rule", index, "list"))

    entries = [value] if isinstance(value, dict) else value
    lookups = []
    for entry in entries:
        if not isinstance(entry, dict):
            fail("list must be a table { field, lookup, file } or a list of them")
            continue
        for key, item in entry.items():
            if key not in _LIST_KEYS or not isinstance(item, _LIST_KEYS[key]):
                fail(f"list.{key}: expected field, lookup, file and check_value, as strings")
        name, lookup, field_name = entry.get("file"), entry.get("lookup", "match_key"), \
            entry.get("field")
        if not isinstance(name, str) or not isinstance(field_name, str):
            fail("list needs a file and a field")
            continue
        if lookup not in LOOKUPS:
            fail(f"list.lookup {lookup!r} is not one of " + ", ".join(LOOKUPS))
            continue
        check_value = None
        if lookup in VALUE_LOOKUPS:
            text = entry.get("check_value")
            if not isinstance(text, str):
                fail(f"list lookup {lookup} needs check_value (a pattern of the key's value)")
                continue
            condition = parse_condition(doc, "rule", index, "list", text, problems)
            if condition is None:
                continue
            check_value = condition.pattern
        elif "check_value" in entry:
            fail(f"check_value belongs to the lookups {' and '.join(VALUE_LOOKUPS)}")
        found = files.get(name, problems)
        if found is None:
            path = files.resolve(name)
            if not path.is_file():
                fail(f"list file {str(path)!r} does not exist")
            continue
        field_name = LIST_FIELD_ALIASES.get(field_name, field_name)
        lookups.append(ListLookup(field_name, lookup, found, check_value))
    return tuple(lookups)


def _decoded_field_name(name: str) -> str | None:
    """The decoded field a `field.NAME` condition tests: a file integrity alert's field
    (`syscheck.path`) is tested on the decoded field it shows (`file`), as Wazuh's rules test
    it; None for an unknown `syscheck.` name."""
    if name.startswith("syscheck."):
        return RULE_FIELD_ALIASES.get(name)
    return name


def _parse_addresses(value: str | list) -> AddressCondition | None:
    entries = [value] if isinstance(value, str) else value
    include, exclude = [], []
    for entry in entries:
        if not isinstance(entry, str):
            return None
        negated = entry.startswith("!")
        network = parse_network(entry[1:] if negated else entry)
        if network is None:
            return None
        (exclude if negated else include).append(network)
    return AddressCondition(tuple(include), tuple(exclude))


def evaluation_order(rule: Rule) -> tuple[int, int]:
    """Where a rule stands among its siblings, as in Wazuh's rules.c: a level-0 rule first
    (Wazuh stores level 0 as 99, "to have high priority", and every level times 100), then
    the others by descending level; load order among equals. So a level-0 rule that ignores
    a line (31108 "simple queries", 5700-5799's level-0 children) is tried before the
    alerting siblings that would otherwise take it."""
    return (-(99 if rule.level == 0 else rule.level) * 100, rule.order)


def _build_tree(rules: dict[int, Rule], problems: list[Problem]) -> RuleTree:
    by_group: dict[str, list[Rule]] = {}
    by_level: dict[int, list[Rule]] = {}
    ordered = sorted(rules.values(), key=lambda r: r.order)
    for rule in ordered:
        rule.children = []
        rule.info = RuleInfo(rule.id, rule.level, rule.description, rule.groups, rule.mitre)
        for group in rule.groups:
            by_group.setdefault(group, []).append(rule)
        by_level.setdefault(rule.level, []).append(rule)
    parents_of: dict[int, list[Rule]] = {}
    watchers_by_sid: dict[int, list[Rule]] = {}
    watchers_by_group: dict[str, list[Rule]] = {}
    for rule in ordered:
        parents: list[Rule] = []
        for sid in rule.if_sid:
            if sid not in rules:
                problems.append(Problem(rule.file, rule.line,
                                        f"rule {rule.id}: if_sid names missing rule {sid}"))
            else:
                parents.append(rules[sid])
        # as in Wazuh's rules.c, a rule counting another's events is that rule's child only
        # when nothing else places it (if_sid, if_group, if_level)
        placed = bool(rule.if_sid or rule.if_group or rule.if_level is not None)
        if rule.if_matched_sid is not None:
            if rule.if_matched_sid not in rules:
                problems.append(Problem(rule.file, rule.line, f"rule {rule.id}: if_matched_sid "
                                        f"names missing rule {rule.if_matched_sid}"))
            else:
                if not placed:
                    parents.append(rules[rule.if_matched_sid])
                watchers_by_sid.setdefault(rule.if_matched_sid, []).append(rule)
        for group_key in (rule.if_group, None if placed else rule.if_matched_group):
            if group_key is None:
                continue
            members = [r for r in by_group.get(group_key, []) if r is not rule]
            if not members:
                problems.append(Problem(rule.file, rule.line,
                                        f"rule {rule.id}: no rule is in group {group_key!r}"))
            parents.extend(members)
        if rule.if_matched_group is not None:
            watchers_by_group.setdefault(rule.if_matched_group, []).append(rule)
        if rule.if_level is not None:
            parents.extend(r for r in by_level.get(rule.if_level, []) if r is not rule)
        unique: dict[int, Rule] = {p.id: p for p in parents}
        parents_of[rule.id] = list(unique.values())
        for parent in unique.values():
            parent.children.append(rule)
    _check_cycles(rules, parents_of, problems)
    for rule in ordered:
        rule.children.sort(key=evaluation_order)
    roots = sorted((r for r in ordered if r.is_root), key=evaluation_order)
    return RuleTree(rules, roots, watchers_by_sid, watchers_by_group)


def _check_cycles(rules: dict[int, Rule], parents_of: dict[int, list[Rule]],
                  problems: list[Problem]) -> None:
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done

    def visit(rule_id: int, path: list[int]) -> None:
        state[rule_id] = 1
        for parent in parents_of.get(rule_id, []):
            if state.get(parent.id) == 1:
                cycle = path[path.index(parent.id):] + [parent.id] if parent.id in path else [
                    rule_id, parent.id]
                rule = rules[rule_id]
                problems.append(Problem(rule.file, rule.line, "rule dependency cycle: "
                                        + " -> ".join(str(r) for r in cycle)))
            elif parent.id not in state:
                visit(parent.id, path + [parent.id])
        state[rule_id] = 2

    for rule_id in sorted(rules):
        if rule_id not in state:
            visit(rule_id, [rule_id])
