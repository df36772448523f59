"""Exceptions the CLI turns into exit codes: 2 for a bad recipe or usage, 1 for a failed run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe: where (a dotted TOML path) and what to do."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FtxError(Exception):
    """Base of ftx's own errors; the message is meant for the user as it is."""

    exit_code = 1


class NestedOptionsError(ValueError):
    """Raised by an options validator that validates other components' options (an RL objective's rewards):
    each problem's ``path`` is relative to the validated value (``"[0].zero_at"``), so the recipe error names
    the full TOML path, as for a top-level key."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class RecipeError(FtxError):
    """A recipe is invalid; lists every problem found, each with its TOML path."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = problems
        self.source = source
        head = f"invalid recipe {source}" if source else "invalid recipe"
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{head}:\n{body}")


class ComponentNotFound(RecipeError):
    """A recipe selects a component no installed plugin registers."""


class OutputRefused(FtxError):
    """The output folder cannot be used as asked: not empty, not an ftx run folder, or not a folder."""

    exit_code = 2


class RunError(FtxError):
    """A run failed after the recipe was accepted."""

    exit_code = 1


class DataError(FtxError):
    """The data cannot be used as the recipe says (bad rows past the threshold, a missing file, ...)."""

    exit_code = 2


class RunInterrupted(FtxError):
    """A run stopped on SIGTERM/SIGINT after saving a checkpoint; ``--resume`` continues it."""

    exit_code = 130


class EvaluationSkipped(Exception):
    """Raised by an evaluator that cannot run here (a package or data set is missing); the message says why."""
