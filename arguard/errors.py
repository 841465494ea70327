"""Errors that reach the operator: each names the file, the line when known, and the problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    path: Path | str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Place:
    """Where a table or key was written, for problems found after the file was read."""

    path: Path | str
    line: int | None

    @classmethod
    def of(cls, problem: Problem) -> "Place":
        return cls(problem.path, problem.line)

    def problem(self, message: str) -> Problem:
        return Problem(self.path, self.line, message)


class ConfigError(Exception):
    """One or more problems in configuration, decoder or rule files."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
