"""Reward functions that need no model: exact match, regex, length penalty, similarity."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from . import ExactMatchRewardOptions, LengthPenaltyOptions, RegexRewardOptions, SimilarityOptions


def normalize(text: str, how: str) -> str:
    """``none`` keeps the text, ``strip`` collapses whitespace, ``lower`` also lower-cases."""
    if how == "none":
        return text
    text = " ".join(text.split())
    return text.lower() if how == "lower" else text


class ExactMatchReward:
    """1.0 when the completion equals the reference; completions without a reference score 0."""

    def __init__(self, options: ExactMatchRewardOptions) -> None:
        self.options = options

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]) -> list[float]:
        how = self.options.normalize
        return [float(ref is not None and normalize(c, how) == normalize(ref, how)) for c, ref in zip(completions, references)]


class RegexReward:
    """``reward`` when the pattern matches (anywhere, or the whole completion), else ``otherwise``."""

    def __init__(self, options: RegexRewardOptions) -> None:
        self.options = options
        try:
            self.pattern = re.compile(options.pattern)
        except re.error as exc:
            from ftx.errors import RecipeError

            raise RecipeError(f"regex reward: invalid pattern {options.pattern!r}: {exc}") from exc

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]) -> list[float]:
        match = self.pattern.fullmatch if self.options.mode == "fullmatch" else self.pattern.search
        return [self.options.reward if match(c) else self.options.otherwise for c in completions]


class LengthPenalty:
    """0 up to ``max``; past it a linear penalty reaching -1 at twice ``max`` (and staying there)."""

    def __init__(self, options: LengthPenaltyOptions) -> None:
        self.options = options

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]) -> list[float]:
        limit = self.options.max
        out = []
        for completion in completions:
            size = len(completion.split()) if self.options.unit == "words" else len(completion)
            out.append(-min(1.0, max(0, size - limit) / limit))
        return out


class Similarity:
    """``difflib`` ratio between completion and reference: partial credit that makes RL signals denser."""

    def __init__(self, options: SimilarityOptions) -> None:
        self.options = options

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]) -> list[float]:
        how = self.options.normalize
        return [
            difflib.SequenceMatcher(None, normalize(c, how), normalize(ref, how)).ratio() if ref is not None else 0.0
            for c, ref in zip(completions, references)
        ]
