"""Command line: argument parsing only; each subcommand calls into the modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arguard import __version__
from arguard.config import Config, load_config, resolve_config_path
from arguard.errors import ConfigError
from arguard.ruleset.files import Ruleset, load_ruleset

EXIT_OK, EXIT_CONFIG, EXIT_USAGE = 0, 1, 2


def _load(args: argparse.Namespace) -> tuple[Config, Ruleset]:
    config = load_config(resolve_config_path(args.config))
    return config, load_ruleset(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    config, ruleset = _load(args)
    where = config.path or "(shipped default configuration)"
    print(f"{where}: OK — {len(ruleset.decoders)} decoders, {len(ruleset.rules.rules)} rules, "
          f"{len(config.sources)} sources, {len(config.commands)} commands, "
          f"{len(config.active_responses)} active responses")
    return EXIT_OK


def cmd_logtest(args: argparse.Namespace) -> int:
    from arguard.logtest import run_logtest
    from arguard.pipeline import Pipeline

    config, ruleset = _load(args)
    pipeline = Pipeline(ruleset, line_time=True)
    mode = "json" if args.json else "summary" if args.summary else "text"
    if args.file:
        with open(args.file, "rb") as source:
            return run_logtest(pipeline, source, args.file, mode, sys.stdout)
    return run_logtest(pipeline, sys.stdin.buffer, "stdin", mode, sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arguard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"arguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", metavar="FILE",
                         help="configuration file (default: $ARGUARD_CONFIG, then "
                              "/etc/arguard/arguard.toml, then the shipped defaults)")
        sub.set_defaults(handler=handler)
        return sub

    add("check-config", cmd_check_config,
        "validate the configuration, decoders and rules; exit 1 with file:line errors")
    logtest = add("logtest", cmd_logtest,
                  "feed log lines (FILE or stdin) through decoders and rules in one session")
    output = logtest.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per input line")
    output.add_argument("--summary", action="store_true", help="only totals at the end")
    logtest.add_argument("file", nargs="?", metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away; that is not an error of ours
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
