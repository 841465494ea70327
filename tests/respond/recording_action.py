"""A response action that only tests know: it keeps its targets in a JSON file. Registering
it is one line at run time (`register()`); nothing in arguard knows it otherwise.

Run as `python -m tests.respond.recording_action ARGS…` it registers itself and runs the
arguard command line with ARGS, so that a real daemon and the CLI can use it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from arguard.respond.actions import ACTIONS
from arguard.respond.actions.base import PATH, STRING, ActionType, Option

NAME = "recorder"


def register() -> None:
    ACTIONS[NAME] = __spec__.name if __name__ == "__main__" else __name__


class RecordingAction:
    """Targets in `file` as {target: {"timeout": …, "label": …, "thread": …}}."""

    def __init__(self, command, owner_tag: str):
        options = ACTION.options_of(command)
        self.path = Path(options["file"])
        self.label = f"{options['label']}@{owner_tag or 'untagged'}"

    def _read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _write(self, entries: dict) -> None:
        # replaced whole, so a test reading it never sees it half written
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(entries))
        os.replace(partial, self.path)

    def add(self, target, timeout, alert):
        entries = self._read()
        entries[target] = {"timeout": timeout, "label": self.label,
                           "thread": threading.current_thread().name}
        self._write(entries)

    def delete(self, target):
        entries = self._read()
        entries.pop(target, None)
        self._write(entries)

    def check(self, target):
        return target in self._read()

    def list_targets(self):
        return set(self._read())


ACTION = ActionType(
    summary="records its targets in a JSON file (tests only)",
    kinds=("ip",),
    build=lambda command, context: RecordingAction(command, context.owner.tag),
    options=(Option("file", PATH, "recorded.json", "the file the targets are kept in"),
             Option("label", STRING, "rec", "written with each target")),
)


if __name__ == "__main__":
    register()
    from arguard.cli import main

    sys.exit(main(sys.argv[1:]))
