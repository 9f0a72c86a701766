"""Problems found in the owner's files, each naming the file, the line and what to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a file the owner edits, reported as ``file:line: message``."""

    file: str
    line: int
    message: str
    warning: bool = False  # advice (e.g. a phrase to avoid): shown by ``check``, never stops supportd

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class InvalidFiles(Exception):
    """Raised when the owner's files cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StateError(Exception):
    """The state folder cannot be used as it is (unreadable, corrupt, locked by another process)."""
