"""Command line: argument parsing only; each subcommand calls into the modules."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from arguard import __version__
from arguard.config import Config, load_config, resolve_config_path
from arguard.durations import parse_duration
from arguard.errors import ConfigError
from arguard.lastgood import OperatorConfig, operator_config
from arguard.ruleset.files import Ruleset, load_ruleset

DESCRIPTION = ("arguard: detects attacks in the host's logs with Wazuh-compatible decoders and "
               "rules and blocks them natively (ipset, iptables, routes, hosts.deny, accounts).")
EXIT_OK, EXIT_CONFIG, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_TESTS_FAILED = 5
EXIT_CHANGES = 6
#: seconds `integrity accept` waits for the daemon (it reads every file it accepts)
ACCEPT_TIMEOUT = 600.0


def _load(args: argparse.Namespace) -> tuple[Config, Ruleset]:
    config = load_config(resolve_config_path(args.config))
    return config, load_ruleset(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    import os

    from arguard.firstinstall import ssh_client_address
    from arguard.overview import describe
    from arguard.patterns import MATCH_TIME_LIMIT, guarded_patterns
    from arguard.respond.actions import host_notes

    config, ruleset = _load(args)
    where = config.path or "(shipped default configuration)"
    if config.fragments:
        where = f"{where} + {', '.join(str(f) for f in config.fragments)}"
    print(f"{where}: OK — {len(ruleset.decoders)} decoders, {len(ruleset.rules.rules)} rules, "
          f"{len(config.sources)} sources, {len(config.commands)} commands, "
          f"{len(config.active_responses)} active responses"
          + (f", {sum(len(e.paths) for e in config.integrity)} paths watched for integrity"
             if config.integrity else ""))
    for name, note in host_notes(config.commands.values()).items():
        print(f"command {name}: {note}")
    for pattern in guarded_patterns():
        print(f"warning: {pattern.where}: pattern {pattern.pattern!r} may backtrack for a long "
              f"time ({pattern.risk}); each match is limited to "
              f"{MATCH_TIME_LIMIT * 1000:.0f} ms")
    for line in describe(config, ruleset, ssh_client_address(os.environ.get("SSH_CONNECTION"))):
        print(line)
    return EXIT_OK


def cmd_logtest(args: argparse.Namespace) -> int:
    from arguard.logtest import run_logtest
    from arguard.pipeline import Pipeline
    from arguard.respond.stage import Simulation

    config, ruleset = _load(args)
    simulation = Simulation(config)
    mode = "json" if args.json else "summary" if args.summary else "text"
    pipeline = Pipeline(ruleset, line_time=True, decide=simulation.policy.decide,
                        prefilter=mode == "summary")
    if args.file:
        with open(args.file, "rb") as source:
            return run_logtest(pipeline, simulation, source, args.file, mode, sys.stdout,
                               sys.stderr)
    return run_logtest(pipeline, simulation, sys.stdin.buffer, "stdin", mode, sys.stdout,
                       sys.stderr)


def cmd_ruletest(args: argparse.Namespace) -> int:
    from arguard.ruletest import RuleTestError, report, run_files

    _, ruleset = _load(args)
    try:
        results = run_files(ruleset, [Path(name) for name in args.paths])
    except RuleTestError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    report(results, sys.stdout)
    failed = any(not result.passed for file_results in results.values()
                 for result in file_results)
    return EXIT_TESTS_FAILED if failed else EXIT_OK


def cmd_import_fail2ban(args: argparse.Namespace) -> int:
    from arguard.importers.fail2ban import import_fail2ban

    report = import_fail2ban([Path(f) for f in args.files], Path(args.output),
                             [Path(args.jail)] if args.jail else [], args.base_id, sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in report.problems:
        print(f"NOT TRANSLATED: {problem}", file=sys.stderr)
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    if report.errors:
        print(f"nothing written to {args.output}: the fail2ban configuration could not be "
              "read", file=sys.stderr)
        return EXIT_CONFIG
    print(f"imported into {args.output}: {len(report.filters_translated)} filters, "
          f"{len(report.jails)} jails"
          + (f"; {len(report.problems)} thing(s) NOT translated (listed above)"
             if report.problems else "; everything translated"), file=sys.stderr)
    return EXIT_USAGE if report.problems else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from arguard.replay import run_replay

    config, ruleset = _load(args)
    return run_replay(config, ruleset, [Path(f) for f in args.files], args.json)


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from arguard.daemon import run_daemon
    from arguard.respond.actions.base import OwnerConflict
    from arguard.statelock import StateLocked
    from arguard.storage import StorageError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_daemon(resolve_config_path(args.config), args.dry_run)
    except StateLocked as error:
        print(f"error: another arguard runs with this state directory: {error}",
              file=sys.stderr)
        return EXIT_CONFIG
    except OwnerConflict as error:
        print(f"error: not starting: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StorageError as error:
        print(f"error: not starting: {error}", file=sys.stderr)
        return EXIT_CONFIG


def _operator_config(args: argparse.Namespace) -> OperatorConfig:
    """The configuration for status, block, unblock and reload: the files on disk, or when
    they are broken (each problem printed as a warning) the one the daemon loaded."""
    chosen = operator_config(resolve_config_path(args.config))
    for warning in chosen.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return chosen


def cmd_status(args: argparse.Namespace) -> int:
    from arguard.manual import DaemonDown, ask_daemon, offline_status
    from arguard.status import render

    chosen = _operator_config(args)
    config = chosen.config
    reply = ask_daemon(config, {"op": "status"})
    if isinstance(reply, DaemonDown):
        path = resolve_config_path(args.config)
        status = offline_status(config, reply.reason, None if path is None else str(path))
    elif not reply.get("ok"):
        print(f"error: {reply.get('error')}", file=sys.stderr)
        return EXIT_REFUSED
    else:
        status = reply["status"]
    status["config_on_disk"] = chosen.on_disk()
    print(json.dumps(status, indent=2) if args.json else render(status))
    return EXIT_OK if status["running"] else EXIT_NOT_RUNNING


def cmd_explain(args: argparse.Namespace) -> int:
    from arguard.explain import explain, render

    target, _ = _one_target(args)
    if target is None:
        return EXIT_USAGE
    config, ruleset = _load(args)
    record = explain(config, ruleset, target)
    sys.stdout.write(json.dumps(record, indent=2) + "\n" if args.json else render(record))
    return EXIT_OK


def _target(args: argparse.Namespace) -> tuple[str | None, str, str | None]:
    """(target, kind, usage error) from TARGET or --user NAME."""
    if args.target is not None and args.user is not None:
        return None, "ip", "give an address or network, or --user NAME, not both"
    if args.user is not None:
        return args.user, "user", None
    return args.target, "ip", None


def _one_target(args: argparse.Namespace) -> tuple[str | None, str]:
    """(target, kind) from TARGET or --user NAME; (None, …) when neither or both were given
    (the usage error is printed)."""
    target, kind, problem = _target(args)
    if problem is None and target is None:
        problem = "give an address or network (TARGET), or --user NAME"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return None, kind
    return target, kind


def cmd_block(args: argparse.Namespace) -> int:
    from arguard.manual import DaemonDown, ask_daemon, direct_block

    target, kind = _one_target(args)
    if target is None:
        return EXIT_USAGE
    config = _operator_config(args).config
    reply = ask_daemon(config, {"op": "block", "target": target, "kind": kind,
                                "command": args.command, "timeout": args.timeout})
    if isinstance(reply, DaemonDown):
        reply = direct_block(config, target, args.command, args.timeout, kind)
    return _report(reply, args.json)


def cmd_unblock(args: argparse.Namespace) -> int:
    from arguard.manual import DaemonDown, ask_daemon, direct_unblock

    target, kind, problem = _target(args)
    if problem is None and (target is None) == (not args.all):
        problem = "give a TARGET, --user NAME or --all"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    config = _operator_config(args).config
    reply = ask_daemon(config, {"op": "unblock", "target": target, "kind": kind,
                                "all": args.all, "command": args.command})
    if isinstance(reply, DaemonDown):
        reply = direct_unblock(config, target, args.command, kind)
    return _report(reply, args.json)


def cmd_reload(args: argparse.Namespace) -> int:
    from arguard.manual import DaemonDown, ask_daemon

    config = _operator_config(args).config
    reply = ask_daemon(config, {"op": "reload"})
    if isinstance(reply, DaemonDown):
        print(f"arguard is not running: {reply.reason}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if not reply.get("ok"):
        print("reload refused, the daemon keeps its old configuration:", file=sys.stderr)
        for line in str(reply.get("error")).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    notes = "".join(f"; {note}" for note in reply.get("notes", []))
    print(f"reloaded: {reply['decoders']} decoders, {reply['rules']} rules{notes}")
    return EXIT_OK


def cmd_integrity_accept(args: argparse.Namespace) -> int:
    import os

    from arguard.manual import DaemonDown, ask_daemon, direct_accept

    config = load_config(resolve_config_path(args.config))
    if not config.integrity:
        print("error: no [[integrity]] table is configured", file=sys.stderr)
        return EXIT_USAGE
    path = os.path.abspath(args.path)
    reply = ask_daemon(config, {"op": "integrity-accept", "path": path}, ACCEPT_TIMEOUT)
    if isinstance(reply, DaemonDown):
        reply = direct_accept(config, path)
    if args.json:
        print(json.dumps(reply, indent=2))
    elif reply.get("ok"):
        print(f"accepted {reply['files']} file{'' if reply['files'] == 1 else 's'} under "
              f"{path} as the new baseline ({reply['copies']} known-good "
              f"cop{'y' if reply['copies'] == 1 else 'ies'} kept)")
        for note in reply.get("notes", []):
            print(f"note: {note}", file=sys.stderr)
    else:
        print(f"error: {reply.get('error')}", file=sys.stderr)
    return EXIT_OK if reply.get("ok") else EXIT_REFUSED


def cmd_integrity_scan(args: argparse.Namespace) -> int:
    if args.dry_run:
        from arguard.integrity.dryrun import run_dry_scan

        config, ruleset = _load(args)
        if not config.integrity:
            print("error: no [[integrity]] table is configured", file=sys.stderr)
            return EXIT_USAGE
        changes = run_dry_scan(config, ruleset, args.json, sys.stdout, sys.stderr)
        return EXIT_CHANGES if changes else EXIT_OK
    from arguard.manual import DaemonDown, ask_daemon

    config = load_config(resolve_config_path(args.config))
    reply = ask_daemon(config, {"op": "integrity-scan"})
    if isinstance(reply, DaemonDown):
        print(f"arguard is not running: {reply.reason} (--dry-run shows what a scan would "
              "report)", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if not reply.get("ok"):
        print(f"error: {reply.get('error')}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(f"scan of {reply['paths']} watched path{'' if reply['paths'] == 1 else 's'} "
              "started; its changes go to alerts.json (arguard status shows when it is "
              "done)")
    return EXIT_OK


def cmd_import_wazuh(args: argparse.Namespace) -> int:
    from arguard.importers.wazuh import run

    if not args.files and args.ossec_root is None:
        print("arguard import wazuh: give FILEs or --ossec-root DIR", file=sys.stderr)
        return 1
    root = Path(args.ossec_root) if args.ossec_root is not None else None
    if root is not None and not (root / "etc" / "ossec.conf").is_file():
        print(f"arguard import wazuh: {root / 'etc' / 'ossec.conf'} does not exist (--ossec-root "
              "is the installation's directory, e.g. a copy of /var/ossec)", file=sys.stderr)
        return 1
    return run([Path(name) for name in args.files], Path(args.output), ossec_root=root)


def cmd_fleet_init(args: argparse.Namespace) -> int:
    import asyncio

    config = load_config(resolve_config_path(args.config))
    fleet = config.fleet
    if fleet is None:
        print(f"error: {config.path or 'the shipped configuration'} has no [fleet] section",
              file=sys.stderr)
        return EXIT_CONFIG
    from arguard.fleet.database import FleetError, initialise

    try:
        before, after = asyncio.run(initialise(fleet))
    except FleetError as error:
        print(f"error: fleet database {fleet.dsn}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    state = (f"created (version {after})" if before == 0 else
             f"up to date (version {after})" if before == after else
             f"upgraded from version {before} to {after}")
    print(f"fleet schema {fleet.schema!r} in {fleet.dsn}: {state}")
    return EXIT_OK


def _report(reply: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(reply, indent=2))
    else:
        for applied in reply.get("applied", []):
            print(_describe(applied))
        if not reply.get("ok"):
            print(f"error: {reply.get('error')}", file=sys.stderr)
    return EXIT_OK if reply.get("ok") else EXIT_REFUSED


def _describe(applied: dict) -> str:
    verb, command, target = applied["verb"], applied["command"], applied["target"]
    if verb == "add" and applied.get("detail"):  # an action that acts once says what it did
        return f"{command} {target}: {applied['detail']}"
    if verb in ("add", "extend"):
        expires = applied.get("expires_at")
        until = "permanently" if expires is None else \
            "until " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
        return f"{'blocked' if verb == 'add' else 'extended'} {target} with {command} {until}"
    if verb == "delete":
        return f"unblocked {target} ({command})"
    return f"{verb}: {target} ({command}): {applied.get('reason')}"


def _duration(text: str) -> int:
    """Seconds from a duration as the configuration takes it (600, 10m, 1h30m, 7d)."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arguard", description=DESCRIPTION)
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
    ruletest = add("ruletest", cmd_ruletest,
                   "run Wazuh ruleset tests (ruleset/testing/tests/*.ini) against this ruleset: "
                   "per file passed/total and every failing case (exit 5 if any fails)")
    ruletest.add_argument("paths", nargs="+", metavar="FILE|DIR")

    importing = commands.add_parser(
        "import", help="translate Wazuh or fail2ban rule files into arguard's TOML",
        description="translate Wazuh or fail2ban rule files into arguard's TOML; exit 2 when "
                    "something could not be translated (each item is reported)")
    sources = importing.add_subparsers(dest="format", required=True, metavar="FORMAT")
    fail2ban = sources.add_parser(
        "fail2ban", help="a fail2ban configuration directory, or filter and jail files",
        description="A fail2ban configuration (a directory such as /etc/fail2ban, or "
                    "filter.d/*.conf and jail.conf/jail.local files) into DIR: the enabled "
                    "jails' (or the given filters') decoders and rules in DIR/decoders.d and "
                    "DIR/rules.d, every filter of a directory in DIR/fail2ban-filters, the "
                    "jails' sources, commands, active responses and white list in "
                    "DIR/conf.d/60-fail2ban.toml. Exit 0: everything translated, 2: "
                    "something was not (each item is reported with file:line), 1: a file "
                    "could not be read (nothing is written).")
    fail2ban.add_argument("files", nargs="+", metavar="DIR|FILE")
    fail2ban.add_argument("-o", "--output", required=True, metavar="DIR")
    fail2ban.add_argument("--jail", metavar="JAIL_FILE",
                          help="a jail.conf/jail.local whose enabled jails become ban rules, "
                               "active responses and sources")
    fail2ban.add_argument("--base-id", type=int, default=100_000,
                          help="first rule id (10 per filter; default 100000)")
    fail2ban.set_defaults(handler=cmd_import_fail2ban)
    wazuh = sources.add_parser(
        "wazuh", help="Wazuh 4.x decoder/rule XML and ossec.conf",
        description="A Wazuh 4.x installation (--ossec-root: etc/ossec.conf's <ruleset>, "
                    "<localfile>, <command>, <active-response>, <global><white_list>, and "
                    "the decoder, rule and list files it names) or decoder XML, rule XML and "
                    "ossec.conf files into DIR/decoders.d, DIR/rules.d, DIR/lists and "
                    "DIR/conf.d/60-wazuh.toml; what cannot be translated is reported on "
                    "stderr. Exit 0: everything translated, 2: something was not, 1: an "
                    "input file could not be read or parsed.")
    wazuh.add_argument("files", nargs="*", metavar="FILE")
    wazuh.add_argument("--ossec-root", metavar="DIR",
                       help="a Wazuh installation (a copy of /var/ossec), read as Wazuh does")
    wazuh.add_argument("-o", "--output", required=True, metavar="DIR")
    wazuh.set_defaults(handler=cmd_import_wazuh)

    replay = add("replay", cmd_replay, "the whole pipeline over old logs in dry run, on the "
                                       "lines' own clock: which blocks when (several files "
                                       "are merged by time)")
    replay.add_argument("--json", action="store_true",
                        help="one JSON object per response, then a summary object")
    replay.add_argument("files", nargs="+", metavar="FILE")

    run = add("run", cmd_run, "run the daemon in the foreground (systemd runs it this way)")
    run.add_argument("--dry-run", action="store_true",
                     help="decide and log every response, apply none")
    status = add("status", cmd_status,
                 "daemon state, sources, active blocks, alerts per rule (exit 3: not running)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    explain_ = add("explain", cmd_explain,
                   "why a target is blocked: each offence with its time, rule, alert and the "
                   "log lines that led to it, the expiry, and the next offence's timeout")
    explain_.add_argument("target", metavar="TARGET", nargs="?",
                          help="an IP address or a network (a block of a network holding the "
                               "address is shown too)")
    explain_.add_argument("--user", metavar="NAME", help="a user name instead (account locks)")
    explain_.add_argument("--json", action="store_true", help="machine-readable output")
    block = add("block", cmd_block, "block a target now (through the daemon, or directly "
                                    "when it is not running)")
    block.add_argument("target", metavar="TARGET", nargs="?",
                       help="an IP address or a network (198.51.100.0/24, 2001:db8::/64)")
    block.add_argument("--user", metavar="NAME", help="a user name instead (account locks)")
    block.add_argument("--command", metavar="C", help="the [[command]] to use (default: the "
                                                      "first bound one for this kind of target)")
    block.add_argument("--timeout", metavar="DURATION", type=_duration,
                       help="a duration: seconds, or 10m, 1h30m, 7d; default: permanent")
    block.add_argument("--json", action="store_true", help="machine-readable output")
    unblock = add("unblock", cmd_unblock, "lift a target's blocks (of all commands, or one)")
    unblock.add_argument("target", metavar="TARGET", nargs="?")
    unblock.add_argument("--user", metavar="NAME", help="a user name instead")
    unblock.add_argument("--all", action="store_true", help="lift every active block")
    unblock.add_argument("--command", metavar="C")
    unblock.add_argument("--json", action="store_true", help="machine-readable output")
    add("reload", cmd_reload, "re-read configuration, decoders and rules in the running "
                              "daemon (as SIGHUP does)")
    fleet = commands.add_parser(
        "fleet", help="the fleet's PostgreSQL database ([fleet], docs/fleet.md)",
        description="the fleet's PostgreSQL database ([fleet], docs/fleet.md)")
    fleet_commands = fleet.add_subparsers(dest="fleet_command", required=True,
                                          metavar="COMMAND")
    init = fleet_commands.add_parser(
        "init", help="create or upgrade the fleet's schema (idempotent)",
        description="Create the fleet's schema in PostgreSQL, or upgrade it to this "
                    "arguard's version; running it again changes nothing. Needs a role "
                    "that may create the schema (the daemons only read and write its "
                    "tables).")
    init.add_argument("-c", "--config", metavar="FILE",
                      help="configuration file (default: $ARGUARD_CONFIG, then "
                           "/etc/arguard/arguard.toml)")
    init.set_defaults(handler=cmd_fleet_init)

    integrity = commands.add_parser(
        "integrity", help="file integrity ([[integrity]]): accept changes, preview a scan",
        description="File integrity monitoring: the [[integrity]] tables' baseline "
                    "(docs/integrity.md).")
    integrity_commands = integrity.add_subparsers(dest="integrity_command", required=True,
                                                  metavar="ACTION")

    def add_integrity(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = integrity_commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", metavar="FILE",
                         help="configuration file (default: $ARGUARD_CONFIG, then "
                              "/etc/arguard/arguard.toml)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=handler)
        return sub

    accept = add_integrity(
        "accept", cmd_integrity_accept,
        "make the current state of PATH (a file, or every watched file under a directory) "
        "the baseline and, with keep_copies, the known-good content that restore-file puts "
        "back (through the daemon, or directly when it is not running)")
    accept.add_argument("path", metavar="PATH")
    scan = add_integrity(
        "scan", cmd_integrity_scan,
        "scan every watched path now (in the running daemon); with --dry-run, show what a "
        "scan would report, as logtest shows lines, recording nothing (exit 6 when there "
        "are changes)")
    scan.add_argument("--dry-run", action="store_true",
                      help="compare with the baseline and show the changes, rules and "
                           "responses; record nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away; that is not an error of ours
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except sqlite3.Error as exc:
        print(f"error: the state database cannot be used: {exc} (`arguard run` replaces a "
              "damaged one)", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
