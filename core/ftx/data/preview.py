"""``ftx data preview``: what the model will be trained on, token by token, before a run spends time.

Samples are shown with trained tokens visibly distinct from masked ones: in colour on a terminal,
and between ``[[`` and ``]]`` otherwise (logs, pipes, tests). Statistics cover every example: token
lengths, the share of tokens that take loss, and the rows dropped, by reason.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from ftx_hookspecs import ChatExample, Example, TextExample

from ..errors import DataError
from .prepare import DataReport, PreparedData, _reasons, prepare_examples
from .tokenize import IGNORE_INDEX, Tokenized

OPEN, CLOSE = "[[", "]]"
"""Markers around trained text when colour is off."""


@dataclass
class PreviewStats:
    """Figures over all examples, for the summary and for callers (tests, tools)."""

    train: int = 0
    eval: int = 0
    lengths: list[int] = field(default_factory=list)
    trained_tokens: int = 0
    total_tokens: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    over_threshold: bool = False

    @property
    def trained_share(self) -> float:
        return self.trained_tokens / self.total_tokens if self.total_tokens else 0.0


def render_tokens(tokenizer: Any, tok: Tokenized, color: bool) -> str:
    """The example's text with trained runs highlighted (colour) or wrapped in ``[[...]]``."""
    out: list[str] = []
    run: list[int] = []
    trained_run = False

    def flush() -> None:
        if not run:
            return
        text = tokenizer.decode(run, skip_special_tokens=False)
        if trained_run:
            out.append(click.style(text, fg="green", bold=True, underline=True) if color else f"{OPEN}{text}{CLOSE}")
        else:
            out.append(click.style(text, dim=True) if color else text)

    for token, label in zip(tok.input_ids, tok.labels):
        trained = label != IGNORE_INDEX
        if trained != trained_run:
            flush()
            run, trained_run = [], trained
        run.append(token)
    flush()
    return "".join(out)


def _describe_other(example: Example) -> str:
    """Preference and classification examples are tokenised by their objectives: show their fields."""
    fields = {k: v for k, v in vars(example).items() if k != "meta"}
    return "\n".join(f"  {k}: {v!r}"[:400] for k, v in fields.items())


def _prepare_lenient(recipe: Any) -> tuple[PreparedData, bool]:
    """Prepare as the run would, but keep going past ``max_bad_fraction`` so the preview can say why."""
    section = recipe.data.model_copy(update={"max_bad_fraction": 1.0})
    data = prepare_examples(section, recipe.data_format.build(), recipe.train.seed)
    bad = sum(data.report.dropped.values())
    over = data.report.total > 0 and bad / data.report.total > recipe.data.max_bad_fraction
    return data, over


def _train_on(recipe: Any) -> str:
    objective_options = getattr(recipe.objective, "options", None)
    if getattr(recipe.objective.spec, "example_kind", "chat") == "text":
        return "all"
    return str(getattr(objective_options, "train_on", "assistant"))


def _load_tokenizer(recipe: Any) -> Any:
    from ..models.loading import load_tokenizer, resolve_model_path

    return load_tokenizer(recipe.model, resolve_model_path(recipe.model))


def preview(
    recipe: Any,
    n: int = 3,
    *,
    color: bool = False,
    echo: Callable[[str], None] = click.echo,
    tokenizer: Any = None,
) -> PreviewStats:
    """Print ``n`` training samples with their loss masks, then statistics; return the statistics."""
    data, over = _prepare_lenient(recipe)
    stats = PreviewStats(train=len(data.train), eval=len(data.eval), over_threshold=over)
    stats.dropped.update(data.report.dropped)
    examples: Sequence[Example] = data.train
    tokenisable = [ex for ex in examples if isinstance(ex, (ChatExample, TextExample))]
    if tokenisable and len(tokenisable) == len(examples):
        from .cache import tokenize_cached

        tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(recipe)
        result = tokenize_cached(
            tokenizer, data.train, data.eval, max_length=recipe.data.max_length, overlength=recipe.data.overlength,
            train_on=_train_on(recipe), strict=False, use_cache=recipe.data.cache, digests=data.current_digests(),
        )
        stats.dropped.update(result.dropped)
        for reason, where in result.first_bad.items():
            data.report.first_bad.setdefault(reason, where)
        data.report.dropped.update(result.dropped)
        data.report.kept -= sum(result.dropped.values())
        for i, tok in enumerate(result.train[:n]):
            echo(click.style(f"--- sample {i + 1} ({len(tok.input_ids)} tokens, {tok.trained} trained)", bold=True)
                 if color else f"--- sample {i + 1} ({len(tok.input_ids)} tokens, {tok.trained} trained)")
            echo(render_tokens(tokenizer, tok, color))
        for split in (result.train, result.eval):  # from the splits' totals: no pass over every token
            lengths = getattr(split, "lengths", None)
            if lengths is not None:
                stats.lengths.extend(lengths.tolist())
                stats.trained_tokens += split.trained_tokens
                stats.total_tokens += split.tokens
                continue
            for tok in split:
                stats.lengths.append(len(tok.input_ids))
                stats.trained_tokens += tok.trained
                stats.total_tokens += len(tok.input_ids)
        legend = "green" if color else f"{OPEN}...{CLOSE}"
        echo(f"--- trained tokens are shown {legend}; the rest is context without loss (train_on = {_train_on(recipe)!r})")
    else:
        for i, example in enumerate(examples[:n]):
            echo(f"--- sample {i + 1} ({type(example).__name__}; tokenised by the objective)")
            echo(_describe_other(example))
    total = data.report.total
    stats.over_threshold = over or (total > 0 and sum(stats.dropped.values()) / total > recipe.data.max_bad_fraction)
    echo(summary(stats, recipe.data.max_length, data.report, recipe.data.max_bad_fraction))
    return stats


def summary(stats: PreviewStats, max_length: int, report: DataReport, max_bad_fraction: float) -> str:
    """The statistics block."""
    lines = [f"examples: {stats.train} train, {stats.eval} eval"]
    if report.mixed:
        from .mix import describe_mix

        lines.append(str(describe_mix(report)))
    if stats.lengths:
        lengths = stats.lengths
        lines.append(f"tokens per example: min {min(lengths)}, mean {statistics.fmean(lengths):.1f}, "
                     f"max {max(lengths)} (max_length {max_length}; {sum(1 for x in lengths if x >= max_length)} at the limit)")
        lines.append(f"trained tokens: {stats.trained_tokens} of {stats.total_tokens} ({stats.trained_share:.1%})")
    if stats.dropped:
        lines.append("dropped: " + ", ".join(f"{reason}: {count}" for reason, count in stats.dropped.most_common()))
        detail = _reasons(report)
        if detail:
            lines.append("first of each" + detail)
    else:
        lines.append("dropped: none")
    if stats.over_threshold:
        lines.append(f"a run would stop here: more rows dropped than data.max_bad_fraction = {max_bad_fraction:g}")
    return "\n".join(lines)


def run_preview(recipe: Any, n: int, color: bool | None = None, trust_remote_code: bool = False) -> PreviewStats:
    """The CLI's entry: colour when stdout is a terminal unless told otherwise; a recipe asking for the model's
    own code needs ``--trust-remote-code`` here as at ``ftx run`` (the tokenizer may run it)."""
    from ..models.loading import check_remote_code

    check_remote_code(recipe.model, trust_remote_code)
    if n < 0:
        raise DataError("-n must be 0 or more")
    use_color = click.get_text_stream("stdout").isatty() if color is None else color
    return preview(recipe, n, color=use_color, echo=lambda message: click.echo(message, color=use_color))
