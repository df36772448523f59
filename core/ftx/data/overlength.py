"""The over-length policy for preference pairs, applied to both answers at once.

A pair is one example: the prompt is cut the same way for chosen and rejected (a pair whose
answers saw different prompts would teach a preference nobody expressed), and ``drop`` or
``error`` apply to the pair as a whole. Preference objectives call :func:`fit_pair` on token ids:

    fitted = fit_pair(prompt_ids, chosen_ids, rejected_ids, max_length, overlength, where=source)
    if fitted is None:  # dropped; count it as "over-length"
        ...
    prompt_ids, chosen_ids, rejected_ids = fitted
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DataError

MIN_PROMPT_TOKENS = 8
"""Truncation keeps at least this many prompt tokens (their end) before it cuts the answers."""


def fit_pair(
    prompt: Sequence[int],
    chosen: Sequence[int],
    rejected: Sequence[int],
    max_length: int,
    overlength: str = "truncate",
    where: str = "pair",
) -> tuple[list[int], list[int], list[int]] | None:
    """Make ``prompt + chosen`` and ``prompt + rejected`` fit ``max_length``, consistently.

    ``truncate``: cut the prompt from the left (its end, next to the answers, matters most), keeping
    at least :data:`MIN_PROMPT_TOKENS`; then cut both answers from the right to the same budget.
    ``drop``: ``None`` when either sequence is too long. ``error``: :class:`DataError` naming ``where``.
    """
    longest = len(prompt) + max(len(chosen), len(rejected))
    if longest <= max_length:
        return list(prompt), list(chosen), list(rejected)
    if overlength == "drop":
        return None
    if overlength == "error":
        raise DataError(
            f"{where}: the pair needs {longest} tokens, over data.max_length = {max_length} "
            "(set data.overlength = 'truncate' or 'drop', or raise max_length)"
        )
    if overlength not in ("truncate", "drop-oldest-turns"):  # a pair has no older turns: it truncates
        raise DataError(f"data.overlength = {overlength!r}: use 'truncate', 'drop-oldest-turns', 'drop' or 'error'")
    answer = max(len(chosen), len(rejected))
    keep_prompt = max(min(len(prompt), MIN_PROMPT_TOKENS), max_length - answer)
    keep_prompt = min(keep_prompt, len(prompt), max_length - 1)
    budget = max_length - keep_prompt
    kept_prompt = list(prompt[len(prompt) - keep_prompt :]) if keep_prompt else []
    return kept_prompt, list(chosen[:budget]), list(rejected[:budget])
