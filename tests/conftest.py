"""Shared fixtures: arguard configurations kept entirely inside a temp directory."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from arguard.config import load_config
from arguard.pipeline import Pipeline
from arguard.ruleset.files import load_ruleset

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def write_config(directory: Path, shipped: bool = True, extra: str = "",
                 lists: bool = False) -> Path:
    """An arguard.toml whose state, logs, socket and drop-ins (and with `lists`, list files:
    `paths.lists_d`, a line after `rules_d`) all live in `directory`."""
    for name in ("decoders.d", "rules.d", "lists", "state", "log", "run", "bin"):
        (directory / name).mkdir(exist_ok=True)
    path = directory / "arguard.toml"
    lists_line = '\n        lists_d = "lists"' if lists else ""
    path.write_text(textwrap.dedent(f"""\
        [paths]
        state_dir = "state"
        log_dir = "log"
        run_dir = "run"
        decoders_d = "decoders.d"
        rules_d = "rules.d"{lists_line}
        ar_bin_dir = "bin"

        [ruleset]
        shipped = {"true" if shipped else "false"}
        """) + textwrap.dedent(extra))
    return path


@pytest.fixture(scope="session")
def shipped_ruleset(tmp_path_factory):
    """The shipped decoders and rules, with no drop-ins from the host's /etc."""
    config = load_config(write_config(tmp_path_factory.mktemp("shipped")))
    return load_ruleset(config)


def pipeline_with(tmp_path: Path, decoders: str, rules: str) -> Pipeline:
    """A logtest-style pipeline (line times) on these decoder and rule files only."""
    path = write_config(tmp_path, shipped=False)
    (tmp_path / "decoders.d" / "test.toml").write_text(textwrap.dedent(decoders))
    (tmp_path / "rules.d" / "test.toml").write_text(textwrap.dedent(rules))
    return Pipeline(load_ruleset(load_config(path)), line_time=True)


def require_corpus(request: pytest.FixtureRequest, path: Path) -> None:
    """The tests that read upstream data from ../shared (beside the checkout) need it there:
    without it they skip and the end of the run says so; under CI (CI=true) they fail."""
    if path.exists():
        return
    message = (f"{path} is missing: this test reads the upstream corpus from ../shared "
               f"beside the checkout")
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: it must be there)")
    request.config.stash.setdefault(missing_corpus_key, set()).add(str(path))
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing = config.stash.get(missing_corpus_key, None)
    if missing:
        terminalreporter.section("corpus tests SKIPPED", yellow=True, bold=True)
        for path in sorted(missing):
            terminalreporter.write_line(f"{path} is missing: put the shared corpus beside the "
                                        f"checkout (../shared) to run these tests", yellow=True)
    for title, key in (("arguard corpus coverage", coverage_key),
                       ("Wazuh ruleset tests (arguard ruletest)", conformance_key)):
        reports = config.stash.get(key, None)
        if reports:
            terminalreporter.section(title)
            for line in reports:
                terminalreporter.write_line(line)


coverage_key = pytest.StashKey[list]()
conformance_key = pytest.StashKey[list]()
missing_corpus_key = pytest.StashKey[set]()
