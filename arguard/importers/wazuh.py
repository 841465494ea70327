"""`arguard import wazuh`: Wazuh 4.x decoder XML, rule XML and ossec.conf → arguard TOML.

Output (in the chosen directory): `decoders.d/<file>.toml`, `rules.d/<file>.toml` (one per input
file that has decoders or rules) and `conf.d/60-wazuh.toml`, a fragment with the `[global]`
white list, `[[command]]` and `[[active_response]]` tables that arguard reads beside
arguard.toml. Commands named like one of arguard's default configuration (`firewall-drop`, …)
are renamed `wazuh-NAME`, so that the fragment loads next to it as it is.

Everything arguard cannot express is reported with file and line. A rule or decoder with a
condition that cannot be translated is skipped (dropping a condition would make it match more,
and so block more), and so are the rules and decoders that depend on it. Things that do not
change what matches (`<info>`, `<fts>`) are dropped with a note.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

import regex
import tomli_w

from arguard.config import parse_network, shipped_dir
from arguard.importers import ospatterns
from arguard.importers.wazuhroot import list_lines, read_installation
from arguard.importers.wazuhxml import Node, XmlError, parse_file
from arguard.progress import Progress
from arguard.ruleset.clock import EventClock, parse_time, parse_weekday
from arguard.ruleset.compiled import COMPILED_RULES
from arguard.ruleset.lists import LOOKUPS, VALUE_LOOKUPS

FRAGMENT = Path("conf.d") / "60-wazuh.toml"
RENAMED_PREFIX = "wazuh-"
EXIT_COMPLETE, EXIT_UNREADABLE, EXIT_INCOMPLETE = 0, 1, 2

# Wazuh's built-in active-response scripts → arguard's native actions (action, expect).
NATIVE_COMMANDS = {
    "firewall-drop": ("firewall", "srcip"),
    "host-deny": ("hosts-deny", "srcip"),
    "route-null": ("route", "srcip"),
    "disable-account": ("disable-account", "dstuser"),
}
# `<order>` names Wazuh stores under another field.
ORDER_ALIASES = {"user": "dstuser", "data": "extra_data"}
# Rule elements testing one decoded field with an OS_Match pattern; `id` is `field.id` in arguard.
RULE_FIELD_ELEMENTS = ("url", "status", "action", "protocol", "extra_data", "system_name",
                       "srcport", "dstport")
RULE_PREDECODED_ELEMENTS = ("program_name", "hostname", "location")
# Wazuh's same_X / different_X names → arguard's correlation value (or `field:` + field name).
CORRELATION = {
    "source_ip": "srcip", "srcip": "srcip", "dst_ip": "dstip", "dstip": "dstip",
    "src_port": "srcport", "srcport": "srcport", "dst_port": "dstport", "dstport": "dstport",
    "user": "user", "id": "id", "url": "url", "location": "location", "protocol": "protocol",
    "action": "action", "status": "status",
    "srcuser": "field:srcuser", "dstuser": "field:dstuser", "data": "field:extra_data",
    "extra_data": "field:extra_data", "system_name": "field:system_name",
}
_GEOIP = ("GeoIP needs a MaxMind country database and a GeoIP reader, which arguard does "
          "not have (docs/wazuh-compatibility.md)")
_UNTRANSLATABLE_RULE_ELEMENTS = {
    "srcgeoip": _GEOIP, "dstgeoip": _GEOIP,
    "check_diff": "it compares the output of Wazuh's command monitoring (<localfile> "
                  "full_command), which arguard does not run",
    "check_if_ignored": "it reads syscheck's ignore list of Wazuh's FIM database, which "
                        "arguard's integrity check does not have",
}
# Wazuh's plugin decoders; only JSON_Decoder has an arguard equivalent
_JSON_PLUGIN = "JSON_Decoder"
_SEPARATORS = regex.compile(r"[,\s]+")
_IDENTIFIER = regex.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE = regex.compile(r"\$([A-Za-z0-9_]+)")


@dataclass(frozen=True, slots=True)
class Note:
    """One thing the operator should know; `translated` is False when behaviour differs."""

    file: Path
    line: int | None
    subject: str
    message: str
    translated: bool

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        kind = "note" if self.translated else "NOT TRANSLATED"
        return f"{where}: {kind}: {self.subject}: {self.message}"


@dataclass
class ImportResult:
    decoder_files: dict[str, list[dict]] = field(default_factory=dict)
    rule_files: dict[str, list[dict]] = field(default_factory=dict)
    white_list: list[str] = field(default_factory=list)
    commands: list[dict] = field(default_factory=list)
    active_responses: list[dict] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    unreadable: bool = False
    # what was skipped, and where each kept table came from (for reporting dependants)
    skipped_rules: set[int] = field(default_factory=set)
    skipped_decoders: set[str] = field(default_factory=set)
    origins: dict[int, tuple[Path, int]] = field(default_factory=dict)
    #: the Wazuh installation read (`--ossec-root`), and the list files its rules use:
    #: name under the output's lists/ → file in the installation
    ossec_root: Path | None = None
    lists: dict[str, Path] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unreadable and all(note.translated for note in self.notes)


class _Skip(Exception):
    """The element being translated cannot be; the message says why."""


def field_name(name: str) -> str:
    """An `<order>` / `<field name>` / `<list field>` name as the arguard field it is (Wazuh's
    `user` is dstuser, `data` extra_data); dynamic names keep their dots (`http.method`)."""
    return ORDER_ALIASES.get(name, name)


def group_name(name: str) -> str:
    """A field name as a regex group name (an identifier); the decoder's `field_names` maps
    it back when it differs."""
    if _IDENTIFIER.fullmatch(name):
        return name
    safe = regex.sub(r"[^A-Za-z0-9_]", "_", name)
    return safe if _IDENTIFIER.fullmatch(safe) else "_" + safe


def import_installation(root: Path, extra: list[Path] = (),
                        progress: IO[str] | None = None) -> ImportResult:
    """A whole Wazuh installation (`--ossec-root`): the files its ossec.conf names, then the
    `extra` files."""
    found = read_installation(root)
    if found.unreadable:
        result = ImportResult(unreadable=True)
    else:
        result = import_files(found.decoder_files + found.rule_files + list(extra)
                              + [found.conf],
                              ossec_root=root, stock=found.stock, progress=progress)
    result.notes[:0] = [Note(f.file, f.line, f.subject, f.message, f.translated)
                        for f in found.findings]
    for name, path in found.lists.items():
        result.lists.setdefault(name, path)
    result.sources = found.sources
    return result


def import_files(paths: list[Path], ossec_root: Path | None = None,
                 stock: set[Path] | frozenset[Path] = frozenset(),
                 progress: IO[str] | None = None) -> ImportResult:
    """`stock`: files of Wazuh's own ruleset, where the rules and decoders arguard ships
    (same ids, same names) are kept rather than imported again. `progress`: where to draw a
    bar of the files read (only on a terminal)."""
    result = ImportResult(ossec_root=ossec_root)
    parsed: list[tuple[Path, Node]] = []
    bar = Progress("import wazuh", len(paths), unit="file", stream=progress)
    for path in bar.items(paths):
        try:
            root = parse_file(path)
        except XmlError as exc:
            result.notes.append(Note(path, exc.line, "file", str(exc), False))
            result.unreadable = True
            continue
        _substitute_variables(root)
        parsed.append((path, root))
    bar.close()
    stems = _output_stems([path for path, _ in parsed])
    shipped = _Shipped.read() if stock else None
    for (path, root), stem in zip(parsed, stems):
        decoders = _Decoders(path, result).translate(root)
        if path in stock:
            decoders = shipped.keep_own_decoders(path, decoders, result)
        if decoders:
            result.decoder_files[stem] = decoders
    for (path, root), stem in zip(parsed, stems):
        rules = _Rules(path, result).translate(root)
        if path in stock:
            rules = shipped.keep_own_rules(path, rules, result)
        if rules:
            result.rule_files[stem] = rules
    _drop_orphans(result, _Shipped.read() if shipped is None else shipped)
    for path, root in parsed:
        _Config(path, result, handled=ossec_root is not None).translate(root)
    _add_missing_native_commands(result)
    _rename_default_commands(result)
    return result


def _rename_default_commands(result: ImportResult) -> None:
    """Commands named like those of arguard's default configuration become `wazuh-NAME`
    (and the active responses naming them follow): a fragment defining `firewall-drop`
    again would not load beside an arguard.toml that has it."""
    with open(shipped_dir("conf") / "arguard.toml", "rb") as default:
        taken = {c["name"] for c in tomllib.load(default).get("command", [])}
    for command in result.commands:
        if command["name"] in taken:
            old, command["name"] = command["name"], RENAMED_PREFIX + command["name"]
            for response in result.active_responses:
                if response["command"] == old:
                    response["command"] = command["name"]
            path, line = result.origins.get(id(command), (Path("ossec.conf"), None))
            result.notes.append(Note(path, line, f"command {old!r}",
                                     f"named {command['name']!r}: arguard's default "
                                     f"configuration has a command {old!r}", True))


def write_output(result: ImportResult, directory: Path) -> list[Path]:
    written = []
    for subdir, files, key in (("decoders.d", result.decoder_files, "decoder"),
                               ("rules.d", result.rule_files, "rule")):
        for stem, tables in files.items():
            path = directory / subdir / f"{stem}.toml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# Imported from Wazuh XML by `arguard import wazuh`.\n\n"
                            + tomli_w.dumps({key: tables}), encoding="utf-8")
            written.append(path)
    for name, source in sorted(result.lists.items()):
        path = directory / "lists" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text, dropped = list_lines(source)
        path.write_text(text, encoding="utf-8")
        written.append(path)
        for number in dropped:
            result.notes.append(Note(source, number, "list", "a line without ':' dropped, as "
                                     "Wazuh's list compiler drops it", True))
    fragment: dict = {}
    if result.sources:
        fragment["source"] = result.sources
    if result.white_list:
        fragment["global"] = {"white_list": result.white_list}
    if result.commands:
        fragment["command"] = result.commands
    if result.active_responses:
        fragment["active_response"] = result.active_responses
    if fragment:
        path = directory / FRAGMENT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Imported from ossec.conf by `arguard import wazuh`: arguard reads "
                        "conf.d/*.toml beside\n# arguard.toml (lists such as white_list are "
                        "added to its own).\n\n" + tomli_w.dumps(fragment), encoding="utf-8")
        written.append(path)
    return written


def run(paths: list[Path], directory: Path, report: TextIO = sys.stderr,
        ossec_root: Path | None = None) -> int:
    """Import (the installation at `ossec_root`, then `paths`), write, report on `report`;
    exit code 0 (all translated), 2 (some things not), 1 (an input file could not be read or
    parsed)."""
    if ossec_root is not None:
        result = import_installation(ossec_root, paths, progress=report)
    else:
        result = import_files(paths, progress=report)
    written = write_output(result, directory)
    for note in result.notes:
        print(note, file=report)
    missing = sum(not note.translated for note in result.notes)
    decoders = sum(len(t) for t in result.decoder_files.values())
    rules = sum(len(t) for t in result.rule_files.values())
    print(f"imported {decoders} decoders, {rules} rules, {len(result.lists)} lists, "
          f"{len(result.sources)} sources, {len(result.commands)} commands, "
          f"{len(result.active_responses)} active responses, {len(result.white_list)} "
          f"white-list entries into {len(written)} files in {directory}; "
          + ("everything translated" if missing == 0 else
             f"{missing} thing(s) NOT translated (listed above)"), file=report)
    if result.unreadable:
        return EXIT_UNREADABLE
    return EXIT_COMPLETE if result.complete else EXIT_INCOMPLETE


# --- shared helpers ------------------------------------------------------------------------

def _substitute_variables(root: Node) -> None:
    """`<var name="X">v</var>` at the top level: `$X` in every later text and attribute."""
    variables: dict[str, str] = {}

    def substitute(text: str) -> str:
        return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group()), text)

    def walk(node: Node) -> None:
        node.text = substitute(node.text)
        node.attrs = {key: substitute(value) for key, value in node.attrs.items()}
        for child in node.children:
            walk(child)

    for node in root.children:
        if node.tag == "var" and "name" in node.attrs:
            variables[node.attrs["name"]] = substitute(node.value)
        else:
            walk(node)


def _output_stems(paths: list[Path]) -> list[str]:
    stems: list[str] = []
    for path in paths:
        stem = regex.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem) or "imported"
        candidate, number = stem, 2
        while candidate in stems:
            candidate, number = f"{stem}-{number}", number + 1
        stems.append(candidate)
    return stems


def _joined(node: Node, tag: str) -> tuple[str, Node] | None:
    """Repeated elements are concatenated with no separator, as Wazuh's reader does."""
    found = node.all(tag)
    if not found:
        return None
    return "".join(child.text for child in found), found[0]


def _is_yes(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("yes", "1", "true")


def _int(value: str, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise _Skip(f"{what} {value!r} is not a number") from None


def _ints(value: str, what: str) -> list[int]:
    return [_int(part, what) for part in _SEPARATORS.split(value.strip()) if part]


def _pattern(element: Node, text: str, default_type: str, group_names=(), *,
             at_offset: bool = False, ordered: bool = False) -> ospatterns.Translated:
    kind = element.attrs.get("type", default_type).strip().lower()
    try:
        translated = ospatterns.translate(kind, text, group_names, at_offset=at_offset,
                                          ordered=ordered)
    except ospatterns.PatternError as exc:
        raise _Skip(f"<{element.tag}> '{text}': {exc}") from None
    if _is_yes(element.attrs.get("negate")):
        translated = ospatterns.Translated(translated.pattern, not translated.negate)
    return translated


def _condition(translated: ospatterns.Translated) -> str | dict:
    if translated.negate:
        return {"pattern": translated.pattern, "negate": True}
    return translated.pattern


# --- decoders ------------------------------------------------------------------------------

_DECODER_ELEMENTS = {"parent", "program_name", "prematch", "regex", "order", "type", "fts",
                     "ftscomment", "plugin_decoder", "json_null_field", "json_array_structure"}
# Wazuh's json_null_field / json_array_structure values arguard has
_JSON_NULL_FIELDS = ("string", "discard")
_JSON_ARRAY_STRUCTURES = ("array", "csv")


class _Translator:
    def __init__(self, path: Path, result: ImportResult):
        self.path = path
        self.result = result

    def note(self, node: Node, subject: str, message: str, translated: bool) -> None:
        self.result.notes.append(Note(self.path, node.line, subject, message, translated))

    def keep(self, table: dict, node: Node) -> dict:
        self.result.origins[id(table)] = (self.path, node.line)
        return table


class _Decoders(_Translator):

    def translate(self, root: Node) -> list[dict]:
        tables = []
        for node in root.children:
            if node.tag != "decoder":
                continue
            subject = f"decoder {node.attrs.get('name', '?')!r}"
            try:
                tables.append(self.keep(self.decoder(node, subject), node))
            except _Skip as exc:
                self.note(node, subject, f"{exc}; decoder skipped", False)
                if not node.all("parent"):
                    self.result.skipped_decoders.add(node.attrs.get("name", "").strip())
        return tables

    def decoder(self, node: Node, subject: str) -> dict:
        name = node.attrs.get("name", "").strip()
        if not name:
            raise _Skip("a decoder needs a name")
        for child in node.children:
            if child.tag not in _DECODER_ELEMENTS:
                raise _Skip(f"<{child.tag}> is not supported")
        table: dict = {"name": name}
        parent = _joined(node, "parent")
        if parent:
            table["parent"] = parent[0].strip()
        names = self.order(node, table)
        program = _joined(node, "program_name")
        if program:
            translated = _pattern(program[1], program[0], "osmatch")
            if translated.negate:
                raise _Skip("a negated <program_name> is not supported")
            table["program_name"] = translated.pattern
        prematch = _joined(node, "prematch")
        after_parent = False
        if prematch:
            offset = prematch[1].attrs.get("offset", "").strip()
            if offset not in ("", "after_parent"):
                raise _Skip(f"prematch offset {offset!r}: Wazuh knows only after_parent "
                            "there and refuses the decoder too")
            after_parent = bool(parent) and offset == "after_parent"
            table["prematch"] = _pattern(prematch[1], prematch[0], "osregex",
                                         at_offset=after_parent, ordered=True).pattern
            if after_parent:
                table["prematch_offset"] = "after_parent"
        plugin = node.all("plugin_decoder")
        regex_element = _joined(node, "regex")
        if plugin:
            self.json(node, plugin[-1], table, subject)
            if regex_element:
                self.note(regex_element[1], subject, "<regex> dropped: Wazuh runs the plugin "
                          "decoder instead of it", True)
                regex_element = None
        else:
            for tag in ("json_null_field", "json_array_structure"):
                for child in node.all(tag):
                    self.note(child, subject, f"<{tag}> dropped: it is an option of "
                              "JSON_Decoder, which this decoder does not use", True)
        if regex_element:
            offset = regex_element[1].attrs.get("offset", "").strip()
            if offset not in ("", "after_parent", "after_prematch", "after_regex"):
                raise _Skip(f"regex offset {offset!r} is not supported")
            if not parent and offset in ("after_parent", "after_regex"):
                offset = ""   # a root has no parent or previous sibling: the line's start
            table["regex"] = _pattern(regex_element[1], regex_element[0], "osregex", names,
                                      at_offset=bool(offset), ordered=True).pattern
            if offset:
                table["regex_offset"] = offset
        elif names and not plugin:
            self.note(node, subject, "<order> without <regex> captures nothing", True)
        decoder_type = _joined(node, "type")
        if decoder_type:
            table["type"] = decoder_type[0].strip()
        fts = _joined(node, "fts")
        if fts:
            table["fts"] = [field_name(n.strip()) for n in fts[0].split(",") if n.strip()] \
                or None
            if table["fts"] is None:
                raise _Skip("<fts> names no field")
        for child in node.all("ftscomment"):
            self.note(child, subject, "<ftscomment> is reference text only; dropped", True)
        if not parent and "program_name" not in table and "prematch" not in table:
            raise _Skip("a root decoder without program_name or prematch would match "
                        "every line")
        return table

    def json(self, node: Node, plugin: Node, table: dict, subject: str) -> None:
        """`<plugin_decoder>JSON_Decoder</plugin_decoder>` and its options."""
        if plugin.value != _JSON_PLUGIN:
            raise _Skip(f"plugin decoder {plugin.value!r}: arguard has only Wazuh's "
                        f"{_JSON_PLUGIN} (the others read Windows, PF, SonicWall, Symantec "
                        "and OSSEC-alert layouts it does not decode)")
        table["json"] = True
        offset = plugin.attrs.get("offset", "").strip()
        if offset not in ("", "after_parent", "after_prematch"):
            raise _Skip(f"plugin_decoder offset {offset!r} is not supported")
        if offset == "after_parent" and "parent" not in table:
            offset = "after_prematch" if "prematch" in table else ""   # a root's own prematch
        if offset == "after_prematch" and "prematch" not in table:
            offset = ""
        if offset:
            table["json_offset"] = offset
        for tag, values, key in (("json_null_field", _JSON_NULL_FIELDS, "json_null_field"),
                                 ("json_array_structure", _JSON_ARRAY_STRUCTURES,
                                  "json_array_structure")):
            found = node.all(tag)
            if found:
                value = found[-1].value.lower()
                if value not in values:
                    raise _Skip(f"<{tag}> {value!r} is not supported (arguard has "
                                + ", ".join(values) + ")")
                table[key] = value

    @staticmethod
    def order(node: Node, table: dict) -> list[str]:
        """The regex group names of `<order>`; names that are not identifiers get a
        `field_names` entry giving the field its own name (`http.method`)."""
        found = _joined(node, "order")
        if not found:
            return []
        names = []
        for raw in found[0].split(","):
            name = field_name(raw.strip())
            group = group_name(name)
            if group != name and name:
                table.setdefault("field_names", {})[group] = name
            names.append(group)
        return names


# --- rules ---------------------------------------------------------------------------------

_RULE_ATTRIBUTES = {"id", "level", "frequency", "timeframe", "ignore", "noalert", "overwrite",
                    "maxsize"}
_RULE_ELEMENTS = ({"if_sid", "if_group", "if_level", "if_matched_sid", "if_matched_group",
                   "decoded_as", "category", "match", "regex", "srcip", "dstip", "user", "id",
                   "field", "description", "group", "mitre", "options", "compiled_rule", "info",
                   "same_field", "different_field", "list", "time", "weekday", "if_fts"}
                  | set(RULE_FIELD_ELEMENTS) | set(RULE_PREDECODED_ELEMENTS))


class _Rules(_Translator):

    def translate(self, root: Node) -> list[dict]:
        tables = []
        for node in root.children:
            if node.tag == "group":
                groups = [g.strip() for g in node.attrs.get("name", "").split(",") if g.strip()]
                rules = node.all("rule")
            elif node.tag == "rule":
                groups, rules = [], [node]
            else:
                continue
            for rule in rules:
                subject = f"rule {rule.attrs.get('id', '?')}"
                try:
                    tables.append(self.keep(self.rule(rule, groups, subject), rule))
                except _Skip as exc:
                    self.note(rule, subject, f"{exc}; rule skipped", False)
                    if rule.attrs.get("id", "").strip().isdigit():
                        self.result.skipped_rules.add(int(rule.attrs["id"]))
        return tables

    def rule(self, node: Node, wrapper_groups: list[str], subject: str) -> dict:
        for attribute in node.attrs:
            if attribute not in _RULE_ATTRIBUTES:
                raise _Skip(f"attribute {attribute}= is not supported")
        table: dict = {"id": _int(node.attrs.get("id", ""), "id"),
                       "level": _int(node.attrs.get("level", ""), "level")}
        if not 1 <= table["id"] <= 999_999:
            raise _Skip("rule ids must be 1-999999")
        if not 0 <= table["level"] <= 16:
            raise _Skip("levels must be 0-16")
        for attribute in ("frequency", "timeframe", "ignore", "maxsize"):
            if attribute in node.attrs:
                table[attribute] = _int(node.attrs[attribute], attribute)
        if _is_yes(node.attrs.get("noalert")):
            table["noalert"] = True
        if _is_yes(node.attrs.get("overwrite")):
            table["overwrite"] = True
        correlation: list[tuple[str, str, Node]] = []   # (same|different, value, element)
        for child in node.children:
            tag = child.tag
            if tag in _UNTRANSLATABLE_RULE_ELEMENTS:
                raise _Skip(f"<{tag}>: {_UNTRANSLATABLE_RULE_ELEMENTS[tag]}")
            if tag.startswith(("same_", "different_", "not_same_")) and tag not in (
                    "same_field", "different_field"):
                correlation.append(self.correlation(child, subject))
            elif tag not in _RULE_ELEMENTS:
                raise _Skip(f"<{tag}> is not supported")
        self.parents(node, table)
        self.descriptive(node, table, wrapper_groups, subject)
        self.conditions(node, table)
        for tag, kind in (("same_field", "same"), ("different_field", "different")):
            for child in node.all(tag):
                correlation.append((kind, "field:" + field_name(child.value), child))
        self.correlate(node, table, correlation, subject)
        return table

    def parents(self, node: Node, table: dict) -> None:
        sids = [sid for child in node.all("if_sid") for sid in _ints(child.text, "if_sid")]
        if sids:
            table["if_sid"] = sids[0] if len(sids) == 1 else sids
        for tag in ("if_group", "if_matched_group", "decoded_as", "category"):
            found = node.all(tag)
            if found:
                table[tag] = found[-1].value
        for tag in ("if_level", "if_matched_sid"):
            found = node.all(tag)
            if found:
                table[tag] = _int(found[-1].value, tag)
        matched = "if_matched_sid" in table or "if_matched_group" in table
        if "frequency" in table and not matched:
            raise _Skip("frequency without if_matched_sid/if_matched_group is not supported")
        if "frequency" in table and table["frequency"] < 2:
            raise _Skip("frequency below 2 is not supported")
        if "timeframe" in table and not matched:
            del table["timeframe"]   # Wazuh uses a timeframe only with if_matched_*

    def descriptive(self, node: Node, table: dict, wrapper_groups: list[str],
                    subject: str) -> None:
        description = _joined(node, "description")
        if description:
            table["description"] = description[0].strip()
        groups = list(wrapper_groups)
        for child in node.all("group"):
            groups += [g.strip() for g in child.text.split(",") if g.strip()]
        if groups:
            table["groups"] = list(dict.fromkeys(groups))
        mitre = [item.value for child in node.all("mitre") for item in child.all("id")]
        if mitre:
            table["mitre"] = mitre
        options = [o.strip() for child in node.all("options") for o in child.text.split(",")
                   if o.strip()]
        if options:
            table["options"] = options
        for child in node.all("info"):
            self.note(child, subject, "<info> is reference text only; dropped", True)

    def conditions(self, node: Node, table: dict) -> None:
        for tag, default in (("match", "osmatch"), ("regex", "osregex"), ("user", "osmatch")):
            found = _joined(node, tag)
            if found:
                table[tag] = _condition(_pattern(found[1], found[0], default))
        for tag in RULE_FIELD_ELEMENTS + RULE_PREDECODED_ELEMENTS:
            found = _joined(node, tag)
            if found:
                table[tag] = _condition(_pattern(found[1], found[0], "osmatch"))
        fields: dict[str, str | dict] = {}
        found = _joined(node, "id")
        if found:
            fields["id"] = _condition(_pattern(found[1], found[0], "osmatch"))
        for child in node.all("field"):
            name = child.attrs.get("name", "").strip()
            if not name:
                raise _Skip("<field> without name=")
            fields[field_name(name)] = _condition(_pattern(child, child.text, "osregex"))
        if fields:
            table["field"] = fields
        for tag in ("srcip", "dstip"):
            entries = [child.value for child in node.all(tag)]
            for entry in entries:
                if parse_network(entry.removeprefix("!")) is None:
                    raise _Skip(f"<{tag}> {entry!r} is not an address or network")
            if entries:
                table[tag] = entries[0] if len(entries) == 1 else entries
        lists = [self.list_lookup(child) for child in node.all("list")]
        if lists:
            table["list"] = lists[0] if len(lists) == 1 else lists
        for tag, parse in (("time", parse_time), ("weekday", parse_weekday)):
            found = node.all(tag)
            if found:
                try:
                    parse(found[-1].value, EventClock())
                except ValueError as exc:
                    raise _Skip(f"<{tag}>: {exc}") from None
                table[tag] = found[-1].value
        if node.all("if_fts"):
            table["if_fts"] = True
        compiled = node.all("compiled_rule")
        if compiled:
            name = compiled[-1].value
            if name not in COMPILED_RULES:
                raise _Skip(f"compiled rule {name!r} is not built into arguard (known: "
                            + ", ".join(sorted(COMPILED_RULES)) + ")")
            table["compiled_rule"] = name

    def list_lookup(self, child: Node) -> dict:
        """`<list field= lookup= check_value=>etc/lists/NAME</list>`; the list file is copied
        to `lists/NAME` (it must be in the Wazuh installation the rule comes from)."""
        lookup = child.attrs.get("lookup", "match_key").strip()
        if lookup not in LOOKUPS:
            raise _Skip(f"<list> lookup {lookup!r} is not one of Wazuh's: " + ", ".join(LOOKUPS))
        name = child.attrs.get("field", "").strip()
        if not name:
            raise _Skip("<list> without field=")
        # Wazuh's `user` here is srcuser, else dstuser, as in arguard's lists: not renamed
        table = {"field": name, "lookup": lookup,
                 "file": self.list_file(child, child.value)}
        check = child.attrs.get("check_value")
        if check is not None and lookup in VALUE_LOOKUPS:
            translated = _pattern(child, check, "osmatch")
            if translated.negate:
                raise _Skip(f"<list> check_value {check!r}: a negated value is not supported")
            table["check_value"] = translated.pattern
        elif check is not None:
            self.note(child, "list", "check_value dropped: Wazuh reads it only with "
                      + " and ".join(VALUE_LOOKUPS), True)
        elif lookup in VALUE_LOOKUPS:
            raise _Skip(f"<list> lookup {lookup} without check_value")
        return table

    def list_file(self, child: Node, text: str) -> str:
        root = self.result.ossec_root or _installation_of(self.path)
        source = root / text if root is not None else None
        if source is None or not source.is_file():
            where = f"in {root}" if root is not None else "(no Wazuh installation around " \
                f"{self.path.name}: give --ossec-root)"
            raise _Skip(f"<list> file {text!r} not found {where}")
        name = text.removeprefix("etc/lists/").lstrip("/")
        self.result.lists[name] = source
        return name

    def correlation(self, child: Node, subject: str) -> tuple[str, str, Node]:
        tag = child.tag
        if tag.startswith("not_same_"):
            raise _Skip(f"<{tag}> is not supported (arguard has different_* instead, which "
                        "means something else)")
        kind, _, name = tag.partition("_")
        if name == "agent":
            if kind == "different":
                raise _Skip(f"<{tag}>: arguard watches one host")
            return kind, "", child
        value = CORRELATION.get(name)
        if value is None:
            raise _Skip(f"<{tag}> is not supported")
        return kind, value, child

    def correlate(self, node: Node, table: dict, correlation: list[tuple[str, str, Node]],
                  subject: str) -> None:
        if not correlation:
            return
        if "frequency" not in table and "if_matched_sid" not in table and \
                "if_matched_group" not in table:
            raise _Skip("same_*/different_* without if_matched_sid/if_matched_group are not "
                        "supported")
        for kind, value, child in correlation:
            if not value:
                self.note(child, subject, f"<{child.tag}> always holds on one host; dropped",
                          True)
            elif value.startswith("field:"):
                names = table.setdefault(f"{kind}_field", [])
                if value[6:] not in names:
                    names.append(value[6:])
            else:
                table[f"{kind}_{value}"] = True


@dataclass(frozen=True)
class _Shipped:
    """The rule ids and root decoder names of arguard's shipped ruleset."""

    rule_ids: frozenset[int]
    roots: frozenset[str]

    @classmethod
    def read(cls) -> "_Shipped":
        ids, roots = set(), set()
        for path in sorted(shipped_dir("rules").glob("*.toml")):
            with open(path, "rb") as file:
                ids |= {rule["id"] for rule in tomllib.load(file).get("rule", [])}
        for path in sorted(shipped_dir("decoders").glob("*.toml")):
            with open(path, "rb") as file:
                roots |= {d["name"] for d in tomllib.load(file).get("decoder", [])
                          if "parent" not in d}
        return cls(frozenset(ids), frozenset(roots))

    def keep_own_rules(self, path: Path, tables: list[dict],
                       result: ImportResult) -> list[dict]:
        kept = [t for t in tables if t["id"] not in self.rule_ids]
        same = sorted(t["id"] for t in tables if t["id"] in self.rule_ids)
        if same:
            result.notes.append(Note(path, None, "stock ruleset", "not imported again, "
                                     "arguard ships them: rules " + _ranges(same), True))
        return kept

    def keep_own_decoders(self, path: Path, tables: list[dict],
                          result: ImportResult) -> list[dict]:
        names = sorted({t["name"] for t in tables if "parent" not in t and
                        t["name"] in self.roots})
        if not names:
            return tables
        result.notes.append(Note(path, None, "stock ruleset", "not imported again, arguard "
                                 "ships them: decoders " + ", ".join(names), True))
        return [t for t in tables if t["name"] not in self.roots and
                t.get("parent") not in self.roots]


def _ranges(ids: list[int]) -> str:
    spans: list[list[int]] = []
    for number in ids:
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _drop_orphans(result: ImportResult, shipped: _Shipped) -> None:
    """Skip (and report) rules whose parent rule was skipped or is nowhere (neither imported
    nor shipped) and children of skipped or missing root decoders, repeating until nothing
    changes."""
    changed = True
    while changed:
        changed = False
        kept_rules = {t["id"] for tables in result.rule_files.values() for t in tables} \
            | shipped.rule_ids
        kept_roots = {t["name"] for tables in result.decoder_files.values() for t in tables
                      if "parent" not in t} | shipped.roots
        for tables in result.rule_files.values():
            for table in list(tables):
                parents = table.get("if_sid", [])
                parents = [parents] if isinstance(parents, int) else list(parents)
                parents += [table["if_matched_sid"]] if "if_matched_sid" in table else []
                lost = [p for p in parents if p not in kept_rules]
                if lost:
                    why = "was skipped" if lost[0] in result.skipped_rules else \
                        "is in none of the imported files and not shipped"
                    tables.remove(table)
                    result.skipped_rules.add(table["id"])
                    _dependant_note(result, table, f"rule {table['id']}",
                                    f"its parent rule {lost[0]} {why}; rule skipped")
                    changed = True
        for tables in result.decoder_files.values():
            for table in list(tables):
                parent = table.get("parent")
                if parent is not None and parent not in kept_roots:
                    tables.remove(table)
                    why = "was skipped" if parent in result.skipped_decoders else \
                        "is in none of the imported files and not shipped"
                    _dependant_note(result, table, f"decoder {table['name']!r}",
                                    f"its parent {parent!r} {why}; decoder skipped")
                    changed = True
    for files in (result.rule_files, result.decoder_files):
        for stem in [s for s, tables in files.items() if not tables]:
            del files[stem]


def _dependant_note(result: ImportResult, table: dict, subject: str, message: str) -> None:
    path, line = result.origins[id(table)]
    result.notes.append(Note(path, line, subject, message, False))


# --- ossec.conf ----------------------------------------------------------------------------

_CONFIG_SECTIONS = {"command", "active-response", "global"}


class _Config(_Translator):
    """`handled`: ossec.conf's `<ruleset>` and `<localfile>` were read already (wazuhroot)."""

    def __init__(self, path: Path, result: ImportResult, handled: bool = False):
        super().__init__(path, result)
        self.known = _CONFIG_SECTIONS | ({"ruleset", "localfile"} if handled else set())

    def translate(self, root: Node) -> None:
        sections = [child for node in root.children if node.tag == "ossec_config"
                    for child in node.children]
        sections += [node for node in root.children if node.tag in _CONFIG_SECTIONS]
        ignored = [s for s in sections if s.tag not in self.known]
        if ignored:
            self.note(ignored[0], "ossec.conf", "sections outside arguard's scope ignored: "
                      + ", ".join(sorted({s.tag for s in ignored})), True)
        # commands first: an active response checks its command's timeout_allowed
        for tag, handler in (("command", self.command), ("global", self.white_list),
                             ("active-response", self.active_response)):
            for section in (s for s in sections if s.tag == tag):
                try:
                    handler(section)
                except _Skip as exc:
                    self.note(section, tag, f"{exc}; skipped", False)

    def command(self, node: Node) -> None:
        name = _text(node, "name")
        executable = _text(node, "executable")
        if not name or not executable:
            raise _Skip("a <command> needs <name> and <executable>")
        if not regex.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise _Skip(f"command name {name!r} must be letters, digits, '-', '_' or '.'")
        if any(c["name"] == name for c in self.result.commands):
            raise _Skip(f"command {name!r} is defined twice")
        table: dict = {"name": name}
        base = Path(executable).name
        native = NATIVE_COMMANDS.get(base.removesuffix(".sh"))
        extra = _text(node, "extra_args")
        if native is not None:
            table["action"], table["expect"] = native
            if extra:
                self.note(node, f"command {name!r}", f"extra_args {extra!r} dropped: the "
                          f"native {native[0]} action takes none", False)
        elif base.endswith((".exe", ".cmd")):
            raise _Skip(f"Windows executable {base!r}")
        else:
            table["executable"] = base
            if base != executable:
                self.note(node, f"command {name!r}", f"executable {executable!r} becomes "
                          f"{base!r}, run from paths.ar_bin_dir", True)
            else:
                self.note(node, f"command {name!r}", f"place {base!r} in paths.ar_bin_dir",
                          True)
            if extra:
                table["extra_args"] = shlex.split(extra)
            expect = _text(node, "expect")
            if expect:
                first = _SEPARATORS.split(expect.strip())[0]
                if first not in ("srcip", "dstip", "srcuser", "dstuser", "user"):
                    raise _Skip(f"<expect> {expect!r} is not supported")
                table["expect"] = first
        table["timeout_allowed"] = _is_yes(_text(node, "timeout_allowed"))
        self.result.commands.append(self.keep(table, node))

    def active_response(self, node: Node) -> None:
        subject = "active-response"
        command = _text(node, "command")
        if not command:
            raise _Skip("an <active-response> needs <command>")
        table: dict = {"command": command, "location": "local"}
        location = (_text(node, "location") or "local").lower()
        if location in ("defined-agent",):
            raise _Skip("location defined-agent names Wazuh agent ids: with a [fleet], write "
                        "location = \"defined-agent\" and agent = [host names] "
                        "(docs/fleet.md)")
        if location not in ("local", "server", "all"):
            raise _Skip(f"location {location!r} is not supported")
        if location != "local":
            self.note(node, subject, f"location {location!r} means this host: \"local\" "
                      "(with a [fleet], location = \"all\" shares it: docs/fleet.md)", True)
        rules_id = _text(node, "rules_id")
        if rules_id:
            table["rules_id"] = _ints(rules_id, "rules_id")
        level = _text(node, "level")
        if level:
            table["level"] = _int(level, "level")
        group = _text(node, "rules_group")
        if group:
            table["rules_group"] = group.strip()
        if not rules_id and not level and not group:
            raise _Skip("an <active-response> needs rules_id, level or rules_group")
        timeout = _text(node, "timeout")
        command_table = next((c for c in self.result.commands if c["name"] == command), None)
        allowed = command_table["timeout_allowed"] if command_table else \
            command.removesuffix(".sh") in NATIVE_COMMANDS
        if timeout:
            if allowed:
                table["timeout"] = _int(timeout, "timeout")
            else:
                self.note(node, subject, f"timeout dropped: command {command!r} does not "
                          "allow one (Wazuh ignores it too)", True)
        offenders = _text(node, "repeated_offenders")
        if offenders:
            if "timeout" in table:
                table["repeated_offenders"] = _ints(offenders, "repeated_offenders")
            else:
                self.note(node, subject, "repeated_offenders dropped: no timeout", True)
        if _is_yes(_text(node, "disabled")):
            table["disabled"] = True
        self.result.active_responses.append(self.keep(table, node))

    def white_list(self, node: Node) -> None:
        for child in node.all("white_list"):
            entry = child.value
            if parse_network(entry) is None:
                self.note(child, "white_list", f"{entry!r} is not an address or network "
                          "(host names are not supported); entry skipped", False)
            elif entry not in self.result.white_list:
                self.result.white_list.append(entry)


def _installation_of(path: Path) -> Path | None:
    """The Wazuh root a rule file such as /var/ossec/etc/rules/local_rules.xml is in."""
    parents = path.resolve().parents
    if len(parents) > 2 and parents[0].name == "rules" and parents[1].name == "etc":
        return parents[2]
    return None


def _text(node: Node, tag: str) -> str | None:
    found = node.all(tag)
    return found[-1].value if found else None


def _add_missing_native_commands(result: ImportResult) -> None:
    """ossec.conf's `<command>` blocks for Wazuh's built-ins are often left out of the part
    people import; an active response naming one gets arguard's native action."""
    defined = {c["name"] for c in result.commands}
    for response in list(result.active_responses):
        name = response["command"]
        native = NATIVE_COMMANDS.get(name.removesuffix(".sh"))
        if name in defined:
            continue
        if native is None:
            result.active_responses.remove(response)
            path, line = result.origins[id(response)]
            result.notes.append(Note(path, line, "active-response", f"command {name!r} is "
                                     "not defined in the imported files; skipped", False))
            continue
        result.commands.append({"name": name, "action": native[0], "expect": native[1],
                                "timeout_allowed": True})
        defined.add(name)
