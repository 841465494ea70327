"""Reading fail2ban's configuration the way fail2ban does, keeping where every line came from.

A configuration name (`jail`, `filter.d/sshd`) is read from `NAME.conf`, `NAME.d/*.conf`,
`NAME.local` and `NAME.d/*.local`, in that order; each file brings its `[INCLUDES] before`
files ahead of it and its `after` files behind it (each with its own `.local`), later
definitions of an option replacing earlier ones, the replaced values kept for
`%(known/name)s`. Values are INI values as Python's configparser reads them for fail2ban
(option names lower-cased, `;` comments after white space, continuation lines indented).

Interpolation: `%(name)s` from the given variables, the section, then `[DEFAULT]` (with
`__name__`, the section's name); `%(section/name)s` from another section (`default/`,
`known/`); `%%` is a per cent sign. Tags: `<name>` are replaced, innermost first, by the
filter's options, its `[Init]` options and the options a jail passes (`filter =
sshd[mode=aggressive]`), and `<section/name>` by that option; tags that name nothing (`<HOST>`)
stay for the regex translation.

Every value is a Text: its lines, each with the file and line it came from (after
interpolation, the line of the innermost value that gave the line its text), so that what
cannot be translated is reported at the line that wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SECTION = re.compile(r"\[(?P<header>.+)\]")
_OPTION = re.compile(r"(?P<option>.*?)\s*(?P<vi>[=:])\s*(?P<value>.*)$")
_INTERPOLATION = re.compile(r"%\(([^)]+)\)s")
_TAG = re.compile(r"<([^ <>]+)>")
_MAX_DEPTH = 10
_MAX_TAG_REPLACEMENTS = 25
_OPTION_LIST = re.compile(r"^([^\[]+)(?:\[(.*)\])?\s*$", re.DOTALL)
_OPTION_ITEM = re.compile(
    r"""\s*([\w\-.]+(?:\?[\w\-.]+=[\w\-.]+)?)=(?:"([^"]*)"|'([^']*)'|([^,\]]*))"""
    r"""(?:,|\]\s*\[|$|(?P<wrong>.+))|,?\s*$|(?P<garbage>.+)""", re.DOTALL)


class ConfError(Exception):
    """A fail2ban file fail2ban itself would refuse (syntax, an undefined variable)."""

    def __init__(self, where: "Origin | Path", message: str):
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Origin:
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class Text:
    """A (possibly multi-line) value; `origins[i]` is where line i came from."""

    value: str
    origins: tuple[Origin | None, ...]

    @classmethod
    def plain(cls, value: str, origin: Origin | None = None) -> "Text":
        return cls(value, (origin,) * (value.count("\n") + 1))

    def lines(self) -> list[tuple[str, Origin | None]]:
        return list(zip(self.value.split("\n"), self.origins))

    def splice(self, start: int, end: int, inner: "Text") -> "Text":
        """This text with value[start:end] replaced by `inner`; a line that gets text of
        `inner` takes inner's origin."""
        first = self.value.count("\n", 0, start)
        last = self.value.count("\n", 0, end)
        inner_lines = inner.value.split("\n")
        origins = list(self.origins[:first])
        for index, origin in enumerate(inner.origins):
            own = origin if inner_lines[index].strip() else None
            if index == 0:
                own = own or self.origins[first]
            if index == len(inner_lines) - 1:
                own = own or self.origins[last]
            origins.append(own)
        origins.extend(self.origins[last + 1:])
        return Text(self.value[:start] + inner.value + self.value[end:], tuple(origins))


Section = dict[str, Text]


@dataclass
class Config:
    """Options of every section of a configuration name, merged over its files."""

    defaults: Section = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def has(self, section: str, option: str) -> bool:
        return option in self.sections.get(section, {}) or option in self.defaults

    def raw(self, section: str, option: str) -> Text | None:
        if section == "DEFAULT":
            return self.defaults.get(option)
        found = self.sections.get(section, {}).get(option)
        return found if found is not None else self.defaults.get(option)

    def get(self, section: str, option: str, variables: dict[str, Text] | None = None,
            ) -> Text | None:
        """The interpolated value; None when the option is not set."""
        variables = variables or {}
        raw = variables.get(option.lower()) or self.raw(section, option)
        if raw is None:
            return None
        return self._interpolate(raw, section, variables, 1)

    def _lookup(self, name: str, section: str, variables: dict[str, Text]) -> Text | None:
        if "/" in name:
            other, _, option = name.partition("/")
            lower = other.lower()
            if lower == "known":
                found = self.sections.get("KNOWN/" + section, {}).get(option)
            elif lower == "default":
                found = None
            else:
                found = self.sections.get(other, {}).get(option)
            return found if found is not None else self.defaults.get(option)
        if name == "__name__":
            return Text.plain(section)
        name = name.lower()
        found = variables.get(name)
        if found is None:
            found = self.sections.get(section, {}).get(name)
        if found is None:
            found = self.defaults.get(name)
        return found

    def _interpolate(self, text: Text, section: str, variables: dict[str, Text],
                     depth: int) -> Text:
        if "%" not in text.value:
            return text
        if depth > _MAX_DEPTH:
            raise ConfError(text.origins[0] or section, "interpolation too deep: "
                            f"{text.value[:60]!r} refers to itself (directly or not)")
        position = 0
        while True:
            at = text.value.find("%", position)
            if at < 0:
                return text
            following = text.value[at + 1:at + 2]
            if following == "%":
                text = text.splice(at, at + 2, Text.plain("%"))
                position = at + 1
                continue
            match = _INTERPOLATION.match(text.value, at)
            if match is None:
                line = text.origins[text.value.count("\n", 0, at)]
                raise ConfError(line or section, "'%' must be followed by '%' or "
                                f"'(name)s': {text.value[at:at + 30]!r}")
            name = match.group(1)
            found = self._lookup(name, section, variables)
            if found is None:
                line = text.origins[text.value.count("\n", 0, at)]
                raise ConfError(line or section, f"%({name})s is not defined "
                                f"(section [{section}])")
            inner = self._interpolate(found, section, variables, depth + 1)
            text = text.splice(at, match.end(), inner)
            position = at + len(inner.value)


def parse_ini(path: Path) -> tuple[Section, dict[str, Section]]:
    """One file: ([DEFAULT] options, other sections). Raises ConfError with the line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfError(path, f"cannot read: {error.strerror}") from None
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfError(Origin(path, raw[:error.start].count(b"\n") + 1),
                        "not valid UTF-8") from None
    defaults: Section = {}
    sections: dict[str, Section] = {}
    current: Section | None = None
    option: str | None = None
    lines: list[tuple[str, Origin]] = []
    indent = 0

    def finish() -> None:
        if current is not None and option is not None:
            while len(lines) > 1 and not lines[-1][0]:
                lines.pop()
            current[option] = Text("\n".join(t for t, _ in lines).rstrip(),
                                   tuple(o for _, o in lines))

    for number, line in enumerate(content.splitlines(), 1):
        origin = Origin(path, number)
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            continue
        value = _without_inline_comment(line).strip()
        if not value:
            if option is not None and lines:
                lines.append(("", origin))
            continue
        this_indent = len(line) - len(line.lstrip())
        if current is not None and option is not None and this_indent > indent:
            lines.append((value, origin))
            continue
        indent = this_indent
        header = _SECTION.fullmatch(value)
        if header:
            finish()
            option, lines = None, []
            name = header.group("header")
            current = defaults if name == "DEFAULT" else sections.setdefault(name, {})
            continue
        if current is None:
            raise ConfError(origin, "an option before the first [section] header")
        match = _OPTION.match(value)
        if match is None or not match.group("option"):
            raise ConfError(origin, f"not an option (name = value): {value[:60]!r}")
        finish()
        option = match.group("option").rstrip().lower()
        if option in current:
            raise ConfError(origin, f"option {option!r} is set twice in this section")
        lines = [(match.group("value").strip(), origin)]
    finish()
    return defaults, sections


def _without_inline_comment(line: str) -> str:
    """configparser's inline comments: `;` preceded by white space starts one."""
    index = 0
    while True:
        index = line.find(";", index + 1)
        if index < 0:
            return line
        if line[index - 1].isspace():
            return line[:index]


def read_config(base: Path, name: str) -> Config:
    """`NAME.conf`, `NAME.d/*.conf`, `NAME.local`, `NAME.d/*.local` under `base`, with their
    includes. Raises ConfError when none exists or one is not readable."""
    stem = base / name
    directory = stem.with_name(stem.name + ".d")
    candidates = [stem.with_name(stem.name + ".conf")]
    candidates += sorted(directory.glob("*.conf")) if directory.is_dir() else []
    candidates.append(stem.with_name(stem.name + ".local"))
    candidates += sorted(directory.glob("*.local")) if directory.is_dir() else []
    present = [path for path in candidates if path.is_file()]
    if not present:
        raise ConfError(stem.with_name(stem.name + ".conf"), "no such fail2ban file")
    config = Config()
    for path in present:
        for included in _with_includes(path, [], config):
            _merge(config, included)
    return config


def read_files(paths: list[Path]) -> Config:
    """Exactly these files (each with its includes), in order."""
    config = Config()
    for path in paths:
        for included in _with_includes(path, [], config):
            _merge(config, included)
    return config


def _with_includes(path: Path, seen: list[Path], config: Config) -> list[Path]:
    """`path` with its `before` includes ahead and `after` includes behind, recursively; a
    missing include is a note (fail2ban skips it too)."""
    defaults, sections = parse_ini(path)
    includes = sections.get("INCLUDES", {})
    parts: dict[str, list[Path]] = {"before": [], "after": []}
    probe = Config(defaults, {"INCLUDES": includes})
    for key in parts:
        value = probe.get("INCLUDES", key)
        for text, origin in (value.lines() if value is not None else []):
            if not text.strip():
                continue
            target = Path(text.strip())
            target = target if target.is_absolute() else path.parent / target
            if target in seen:
                continue
            for candidate in (target, target.with_suffix(".local")):
                if candidate.is_file():
                    parts[key].extend(_with_includes(candidate, seen + [path], config))
                elif candidate == target and candidate.suffix != ".local":
                    config.notes.append(f"{origin}: include {text.strip()} not found; "
                                        f"fail2ban goes on without it, so does the import")
    return parts["before"] + [path] + parts["after"]


def _merge(config: Config, path: Path) -> None:
    if path not in config.files:
        config.files.append(path)
    defaults, sections = parse_ini(path)
    config.defaults.update(defaults)
    for name, options in sections.items():
        known = config.sections.get(name)
        if known is None:
            config.sections[name] = dict(options)
            continue
        replaced = {k: v for k, v in known.items() if k in options}
        config.sections.setdefault("KNOWN/" + name, {}).update(replaced)
        known.update(options)


def substitute_tags(options: dict[str, Text], extra) -> dict[str, Text]:
    """fail2ban's `<tag>` replacement over a filter's options, innermost tag first; `extra`
    (name → Text or None) answers tags that are not options (`<lt_file/__prefix_line>`)."""
    result = dict(options)
    for name in list(result):
        text = result[name]
        counts: dict[str, int] = {}
        position = 0
        while True:
            match = _TAG.search(text.value, position)
            if match is None:
                break
            tag = match.group(1)
            if tag == name or counts.get(tag, 0) >= _MAX_TAG_REPLACEMENTS:
                raise ConfError(text.origins[text.value.count("\n", 0, match.start())]
                                or Path("?"), f"<{tag}> in {name} refers to itself")
            replacement = result.get(tag) if tag in result else extra(tag)
            if replacement is None:
                position = match.end()
                continue
            counts[tag] = counts.get(tag, 0) + 1
            while match is not None:   # every occurrence, as fail2ban replaces them at once
                text = text.splice(match.start(), match.end(), replacement)
                at = text.value.find(f"<{tag}>", match.start() + len(replacement.value))
                match = None if at < 0 else _TAG.match(text.value, at)
            position = 0   # the replacement may complete an outer tag (`<lt_<logtype>/…>`)
        result[name] = text
    return result


def option_list(text: str) -> tuple[str, dict[str, str]]:
    """`name[opt=value, opt2="v, 2"]` → (name, options); raises ValueError on bad syntax."""
    match = _OPTION_LIST.match(text.strip())
    if match is None:
        raise ValueError("unexpected option syntax")
    name, body = match.groups()
    options: dict[str, str] = {}
    for item in _OPTION_ITEM.finditer(body or ""):
        if item.group("wrong") or item.group("garbage"):
            raise ValueError(f"unexpected text in {text.strip()!r}: "
                             f"{(item.group('wrong') or item.group('garbage'))[:25]!r}")
        if item.group(1):
            value = next(v for v in item.group(2, 3, 4) if v is not None)
            options[item.group(1).strip()] = value.strip()
    return name.strip(), options


_SPLIT_OPTIONS = re.compile(
    r"""(?:[^\[\s]+(?:\s*\[\s*(?:[\w\-.]+(?:\?[\w\-.]+=[\w\-.]+)?=(?:"[^"]*"|'[^']*'|"""
    r"""[^,\]]*)\s*(?:,|\]\s*\[)?\s*)*\])?\s*|\S+)(?=\n\s*|\s+|$)""", re.DOTALL)


def split_option_lists(text: str) -> list[str]:
    """`action` values: several `name[options]` separated by white space or new lines."""
    return [item.strip() for item in _SPLIT_OPTIONS.findall(text) if item.strip()]


# --- filters and jails -----------------------------------------------------------------------

FILTER_OPTIONS = ("usedns", "prefregex", "ignoreregex", "failregex", "maxlines",
                  "datepattern", "journalmatch")
_TRUE = ("true", "yes", "1", "on")


@dataclass
class FilterDefinition:
    name: str
    files: list[Path]
    options: dict[str, Text]          # FILTER_OPTIONS that are set, tags substituted
    notes: list[str]

    def text(self, option: str) -> Text | None:
        return self.options.get(option)


def read_filter(filter_dir: Path, name: str, passed: dict[str, str],
                jail_variables: dict[str, Text] | None = None) -> FilterDefinition:
    """A filter as fail2ban's FilterReader combines it: [Definition] interpolated with the
    jail's options and the options passed in `filter = name[...]`, [Init] options, then tags."""
    config = read_config(filter_dir, name)
    given = {k.lower(): Text.plain(v) for k, v in passed.items()}
    variables = dict(jail_variables or {})
    variables.update(given)
    combined: dict[str, Text] = {}
    for option in FILTER_OPTIONS:
        if option in variables:
            continue
        value = config.get("Definition", option, variables) \
            if option in config.sections.get("Definition", {}) or option in config.defaults \
            else None
        if value is not None:
            combined[option] = value
    for option in config.sections.get("Init", {}):
        value = config.get("Init", option)
        if value is not None:
            combined.setdefault("known/" + option, value)
            if option not in given:
                combined[option] = value
    combined.update(given)

    def other(tag: str) -> Text | None:
        if "/" in tag:
            section, _, option = tag.partition("/")
            lower = section.lower()
            if lower == "known":
                found = config.sections.get("KNOWN/Definition", {}).get(option) or \
                    config.raw("Definition", option)
                section = "Definition"
            elif lower == "default":
                found, section = config.defaults.get(option), "Definition"
            elif section in config.sections:
                found = config.raw(section, option)
            else:
                found = None
            return None if found is None else config._interpolate(found, section, {}, 1)
        if not config.has("Definition", tag) and tag.lower() not in variables:
            return None
        return config.get("Definition", tag, variables)

    options = substitute_tags(combined, other)
    return FilterDefinition(name, config.files,
                            {k: v for k, v in options.items() if k in FILTER_OPTIONS},
                            config.notes)


@dataclass
class JailDefinition:
    name: str
    origin: Origin | None
    options: dict[str, Text]
    set_at: dict[str, Origin]      # where each option was written (before interpolation)


JAIL_OPTIONS = ("enabled", "filter", "backend", "maxretry", "findtime", "bantime",
                "bantime.increment", "bantime.factor", "bantime.formula",
                "bantime.multipliers", "bantime.maxtime", "bantime.rndtime",
                "bantime.overalljails", "ignoreip", "ignoreself", "ignorecommand", "logpath",
                "action", "usedns", "logtimezone") + FILTER_OPTIONS


def read_jails(config_dir: Path, files: list[Path] | None = None, extra: list[Path] = (),
               ) -> tuple[list[JailDefinition], list[str]]:
    """The enabled jails of `jail.conf`, `jail.d/*.conf`, `jail.local`, `jail.d/*.local`
    under config_dir, then of the `extra` files (or of exactly `files`), each with its
    options interpolated."""
    config = read_config(config_dir, "jail") if files is None else read_files(files)
    for path in extra:
        for included in _with_includes(path, [], config):
            _merge(config, included)
    config.defaults.setdefault("fail2ban_version", Text.plain("1.1.0"))
    config.defaults.setdefault("fail2ban_confpath", Text.plain(str(config_dir)))
    jails = []
    for name, section in config.sections.items():
        if name == "INCLUDES" or name.startswith("KNOWN/"):
            continue
        enabled = config.get(name, "enabled")
        if enabled is None or enabled.value.strip().lower() not in _TRUE:
            continue
        options: dict[str, Text] = {}
        set_at: dict[str, Origin] = {}
        for option in JAIL_OPTIONS:
            if config.has(name, option):
                options[option] = config.get(name, option)
                raw = config.raw(name, option)
                if raw is not None and raw.origins[0] is not None:
                    set_at[option] = raw.origins[0]
        header = next((o for t in section.values() for o in t.origins if o), None)
        jails.append(JailDefinition(name, header, options, set_at))
    return jails, config.notes
