"""`arguard integrity scan --dry-run`: what a scan would report now, logtest-style.

Every watched path is compared with the baseline in SQLite (the daemon's, which may be
running meanwhile) and nothing is recorded; each change goes through the rules and a
Simulation of the respond stage, and is shown as `arguard logtest` shows a line: the
decoded fields (Wazuh's syscheck fields), the rule, the responses that would run.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import IO

from arguard.config import Config
from arguard.integrity.baseline import Baseline, Roots
from arguard.logtest import outcome_dict, print_outcome
from arguard.pipeline import Pipeline
from arguard.respond.stage import Simulation
from arguard.ruleset.files import Ruleset
from arguard.store import Store
from arguard.syscheck import change_event


def run_dry_scan(config: Config, ruleset: Ruleset, as_json: bool, out: IO[str],
                 err: IO[str]) -> int:
    """Show the changes; how many there are."""
    roots = Roots(config.integrity, config.paths.own_directories)
    database = config.paths.database
    if not database.exists():
        err.write(f"no baseline yet ({database} does not exist): the daemon records it at "
                  "its first start, reporting nothing\n")
        return 0
    store = Store(database)
    try:
        baseline = Baseline(store, roots, None, write=False)
        simulation = Simulation(config)
        pipeline = Pipeline(ruleset, line_time=False, decide=simulation.policy.decide)
        counts: Counter[str] = Counter()
        for root in roots:
            if not baseline.has_baseline(root):
                err.write(f"{root.shown}: no baseline yet; its first scan records it, "
                          "reporting nothing\n")
                continue
            for changes in baseline.scan(root):
                for change in changes:
                    counts[change.event] += 1
                    event = change_event(change, root.entry.checks)
                    outcome = pipeline.process_event(event)
                    simulation.advance(event.time)
                    applied = simulation.apply(outcome.responses)
                    if as_json:
                        out.write(json.dumps(outcome_dict(event.line.text, outcome, applied),
                                             ensure_ascii=False) + "\n")
                    else:
                        print_outcome(event.line.text, outcome, applied, out)
    finally:
        store.close()
    total = sum(counts.values())
    err.write(f"{total} change{'' if total == 1 else 's'} would be reported: "
              + ", ".join(f"{kind} {counts[kind]}" for kind in ("added", "modified", "deleted"))
              + f" ({len(roots)} watched path{'' if len(roots) == 1 else 's'}; nothing was "
                "recorded)\n")
    return total
