"""Which decoder and rule files a configuration loads, in which order."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from arguard.config import Config, Correlation, shipped_dir
from arguard.decode.decoders import DecoderSet, load_decoder_files
from arguard.errors import ConfigError, Problem
from arguard.ruleset.loader import RuleTree, load_rule_files


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
    return Ruleset(decoders, rules, config.correlation)
