"""`arguard import wazuh --ossec-root DIR`: which files of a Wazuh installation to import, read
the way Wazuh's analysisd and logcollector read `etc/ossec.conf`.

`<ruleset>`: `<decoder_dir>` and `<rule_dir>` (relative to the installation, files in name
order, `pattern=` a regex on the file name, default `.xml$`), `<decoder>` and `<rule>` (single
files), `<decoder_exclude>` and `<rule_exclude>` (file names or paths), `<list>` (list files,
`etc/lists/NAME`). Without a `<ruleset>` Wazuh's defaults apply (ruleset/decoders,
ruleset/rules, etc/decoders, etc/rules). `<localfile>` gives the log sources.

Wazuh's stock files (under `ruleset/`) for the products arguard ships are not imported:
arguard's own decoders and rules of them (rules/, decoders/) are loaded instead, with Wazuh's
ids, levels and groups; the other stock files are imported like the admin's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import regex

from arguard.importers.wazuhxml import Node, XmlError, parse_file
from arguard.ruleset.lists import split_line

CONF = Path("etc") / "ossec.conf"
DEFAULT_DIRS = {"decoder": ["ruleset/decoders", "etc/decoders"],
                "rule": ["ruleset/rules", "etc/rules"]}
DEFAULT_FILE_PATTERN = r"\.xml$"
#: Wazuh 4.x stock files whose decoders and rules arguard ships (decoders/, rules/)
SHIPPED_STOCK = {
    "0025-apache_decoders.xml": "decoders/0025-apache.toml",
    "0170-nginx_decoders.xml": "decoders/0230-nginx.toml",
    "0205-pam_decoders.xml": "decoders/0300-pam.toml",
    "0310-ssh_decoders.xml": "decoders/0310-sshd.toml",
    "0375-web-accesslog_decoders.xml": "decoders/0375-web-accesslog.toml",
    "0085-pam_rules.xml": "rules/0085-pam.toml",
    "0095-sshd_rules.xml": "rules/0095-sshd.toml",
    "0245-web_rules.xml": "rules/0245-web.toml",
    "0250-apache_rules.xml": "rules/0250-apache.toml",
    "0260-nginx_rules.xml": "rules/0260-nginx.toml",
    "0270-web_appsec_rules.xml": "rules/0270-web-appsec.toml",
}
#: logcollector formats whose lines arguard reads as they are
_LINE_FORMATS = {"syslog", "json", "apache", "squid", "snort-full", "snort-fast", "audit",
                 "nmapg"}
_LOCALFILE_NOTES = {"only-future-events", "label", "frequency", "alias", "age",
                    "reconnect_time", "query"}


@dataclass(frozen=True, slots=True)
class Finding:
    """A note for the report: (file, line, subject, message, translated)."""

    file: Path
    line: int | None
    subject: str
    message: str
    translated: bool


@dataclass
class Installation:
    root: Path
    conf: Path
    conf_node: Node | None = None
    decoder_files: list[Path] = field(default_factory=list)
    rule_files: list[Path] = field(default_factory=list)
    #: files of Wazuh's stock ruleset (imported with arguard's shipped rules kept)
    stock: set[Path] = field(default_factory=set)
    lists: dict[str, Path] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unreadable: bool = False


def read_installation(root: Path) -> Installation:
    conf = root / CONF
    found = Installation(root, conf)
    try:
        found.conf_node = parse_file(conf)
    except XmlError as exc:
        found.findings.append(Finding(conf, exc.line, "file", str(exc), False))
        found.unreadable = True
        return found
    sections = [child for node in found.conf_node.children if node.tag == "ossec_config"
                for child in node.children]
    rulesets = [s for s in sections if s.tag == "ruleset"]
    _Ruleset(found, rulesets).read()
    for section in (s for s in sections if s.tag == "localfile"):
        _localfile(found, section)
    return found


class _Ruleset:
    def __init__(self, found: Installation, sections: list[Node]):
        self.found = found
        self.entries = [child for section in sections for child in section.children]

    def read(self) -> None:
        excluded = {kind: {e.value for e in self.entries if e.tag == f"{kind}_exclude"}
                    for kind in ("decoder", "rule")}
        for kind, target in (("decoder", self.found.decoder_files),
                             ("rule", self.found.rule_files)):
            dirs = [e for e in self.entries if e.tag == f"{kind}_dir"]
            singles = [e for e in self.entries if e.tag == kind]
            if not self.entries:
                paths = [p for d in DEFAULT_DIRS[kind] for p in self.directory(d, None)]
            else:
                paths = [p for d in dirs for p in self.directory(d.value, d)]
                paths += [self.found.root / e.value for e in singles]
            for path in paths:
                relative = path.relative_to(self.found.root).as_posix() \
                    if path.is_relative_to(self.found.root) else str(path)
                if path.name in excluded[kind] or relative in excluded[kind]:
                    continue
                stock = relative.startswith("ruleset/")
                if stock and path.name in SHIPPED_STOCK:
                    self.found.findings.append(Finding(
                        path, None, "stock ruleset", "not imported: arguard ships the same "
                        f"decoders and rules ({SHIPPED_STOCK[path.name]})", True))
                    continue
                if path not in target:
                    target.append(path)
                if stock:
                    self.found.stock.add(path)
        for entry in (e for e in self.entries if e.tag == "list"):
            path = self.found.root / entry.value
            if not path.is_file():
                self.found.findings.append(Finding(self.found.conf, entry.line, "list",
                                                   f"{entry.value!r} does not exist; skipped",
                                                   False))
                continue
            self.found.lists[entry.value.removeprefix("etc/lists/")] = path

    def directory(self, name: str, entry: Node | None) -> list[Path]:
        path = self.found.root / name
        if not path.is_dir():
            if entry is not None:
                self.found.findings.append(Finding(self.found.conf, entry.line, entry.tag,
                                                   f"{name!r} is not a directory; skipped",
                                                   False))
            return []
        pattern = entry.attrs.get("pattern", DEFAULT_FILE_PATTERN) if entry is not None \
            else DEFAULT_FILE_PATTERN
        try:
            compiled = regex.compile(pattern)
        except regex.error as exc:
            self.found.findings.append(Finding(self.found.conf, entry.line if entry else None,
                                               "ruleset", f"pattern {pattern!r}: {exc}", False))
            return []
        return sorted(p for p in path.iterdir() if p.is_file() and compiled.search(p.name))


def _localfile(found: Installation, node: Node) -> None:
    """`<localfile>` → a `[[source]]` table, when arguard reads that log as Wazuh does."""
    def text(tag: str) -> str | None:
        items = node.all(tag)
        return items[-1].value if items else None

    def refuse(message: str) -> None:
        found.findings.append(Finding(found.conf, node.line, "localfile", message + "; "
                                      "skipped", False))

    log_format = (text("log_format") or "syslog").lower()
    location = text("location")
    filters = [child.tag for child in node.children if child.tag in ("ignore", "restrict")]
    if filters:
        return refuse(f"<{filters[0]}> (lines Wazuh leaves out of {location}) is not "
                      "supported")
    if log_format == "journald":
        source: dict = {"journal": {}}
    elif log_format not in _LINE_FORMATS:
        return refuse(f"log_format {log_format!r}: arguard reads lines of log files "
                      "(syslog, json, apache, squid, snort, audit) and the journal")
    elif not location or not location.startswith("/"):
        return refuse(f"location {location!r} is not a file path")
    elif "%" in location:
        return refuse(f"location {location!r}: strftime names are not supported")
    else:
        source = {"path": location}
    for child in (c for c in node.children if c.tag in _LOCALFILE_NOTES):
        found.findings.append(Finding(found.conf, child.line, "localfile", f"<{child.tag}> "
                                      "dropped: arguard reads new lines as they come", True))
    if source not in found.sources:
        found.sources.append(source)


def list_lines(path: Path) -> tuple[str, list[int]]:
    """A list file's text without the lines Wazuh's list compiler drops (no `:`), and the
    numbers of the lines dropped."""
    kept, dropped = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                  .splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#") and split_line(line) is None:
            dropped.append(number)
        else:
            kept.append(line)
    return "".join(line + "\n" for line in kept), dropped
