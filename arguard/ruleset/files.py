"""Which decoder and rule files a configuration loads, in which order."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from arguard.config import ActiveResponse, Config, Correlation, shipped_dir
from arguard.decode.decoders import DecoderSet, load_decoder_files
from arguard.errors import ConfigError, Problem
from arguard.ruleset.loader import Rule, RuleTree, load_rule_files


@dataclass(frozen=True)
class Ruleset:
    decoders: DecoderSet
    rules: RuleTree
    correlation: Correlation = Correlation()


def _toml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".toml" and p.is_file())


def decoder_files(config: Config) -> list[Path]:
    shipped = _toml_files(shipped_dir("decoders")) if config.shipped_ruleset else []
    return shipped + _toml_files(config.paths.decoders_d)


def rule_files(config: Config) -> list[Path]:
    shipped = _toml_files(shipped_dir("rules")) if config.shipped_ruleset else []
    return shipped + _toml_files(config.paths.rules_d)


def load_ruleset(config: Config) -> Ruleset:
    """Load decoders and rules together so that every problem of both is reported at once."""
    problems: list[Problem] = []
    decoders = rules = None
    try:
        decoders = load_decoder_files(decoder_files(config))
    except ConfigError as exc:
        problems.extend(exc.problems)
    zone = zoneinfo.ZoneInfo(config.time_zone) if config.time_zone else None
    try:
        rules = load_rule_files(rule_files(config), config.paths.lists_d, zone)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or decoders is None or rules is None:
        raise ConfigError(problems)
    # a chain's bindings share their selection (and where it was written): each mistake once
    problems = list(dict.fromkeys(p for binding in config.active_responses
                                  for p in binding_problems(binding, rules)))
    if problems:
        raise ConfigError(problems)
    return Ruleset(decoders, rules, config.correlation)


def selected_rules(binding: ActiveResponse, rules: RuleTree) -> list[Rule]:
    """The alerting rules whose alerts the binding responds to, by id."""
    return sorted((rule for rule in rules.rules.values()
                   if rule.alerts and binding.selects(rule.info)), key=lambda rule: rule.id)


def binding_problems(binding: ActiveResponse, rules: RuleTree) -> list[Problem]:
    """What of an [[active_response]]'s selection can never fire with these rules: a
    `rules_id` no file defines or that never alerts, a `level` no alerting rule reaches, a
    `rules_group` (one group, or several separated by `|`) no alerting rule of that level
    belongs to. One problem per mistake."""
    found: list[Problem] = []
    place = binding.place
    for rule_id in binding.rules_id:
        rule = rules.rules.get(rule_id)
        if rule is None:
            found.append(place("rules_id").problem(
                f"rules_id names rule {rule_id}, which no loaded rule file defines"))
        elif not rule.alerts:
            found.append(place("rules_id").problem(
                f"rules_id names rule {rule_id}, which never alerts (level {rule.level}"
                f"{', noalert' if rule.noalert else ''}): the response would never run"))
    alerting = [rule for rule in rules.rules.values() if rule.alerts]
    if binding.level is not None:
        alerting = [rule for rule in alerting if rule.level >= binding.level]
        if not alerting:
            found.append(place("level").problem(
                f"level = {binding.level} selects no rule: no loaded rule alerts at level "
                f"{binding.level} or above"))
            return found
    if binding.rules_group is not None:
        wanted = {group.strip() for group in binding.rules_group.split("|")}
        if not any(not wanted.isdisjoint(rule.groups) for rule in alerting):
            at_level = "" if binding.level is None else f" at level {binding.level} or above"
            found.append(place("rules_group").problem(
                f"rules_group {binding.rules_group!r} selects no rule: no loaded alerting "
                f"rule{at_level} has {'that group' if len(wanted) == 1 else 'any of them'}"))
    return found
