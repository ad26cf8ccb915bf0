"""One exception root; every user-facing problem is reported location first."""

from __future__ import annotations

from dataclasses import dataclass

from launcher.spec.credentials import mask_tokens

EXIT_BUG = 3  # `launch`'s exit code for a bug in launcher (its own, or one a local run hit)
EXIT_STOPPED = 143  # a run that `launch stop` ended: 128 + SIGTERM, as a SIGTERM-stopped run exits


def printable(text: str) -> str:
    """`text` safe to print on one line: tokens masked (hf_***), and control, line-separator and
    bidirectional characters (which could hide or reorder what a reader sees) escaped as repr does.
    """
    text = mask_tokens(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file with a 1-based line and column, or a `--set` flag."""

    source: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    location: Location
    path: str  # a JSON path such as $.compute.gpu_count, or "" when the problem is the file
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: "
        return printable(f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}")


class LauncherError(Exception):
    """The root of every error that is the user's to fix (exit code 1)."""

    exit_code = 1


class SpecError(LauncherError):
    """One or more problems in a job spec, reported all at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RunError(LauncherError):
    """A run could not start or did not finish, for a reason the user can act on."""
