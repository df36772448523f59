"""Turn the recipe's files into validated, split examples through the selected data format."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ftx_hookspecs import DataFormat, Example, RowError

from ..errors import DataError
from ..recipe.schema import DataSection
from .sources import Row, read_rows


@dataclass
class DataReport:
    """What preparation kept and dropped, by reason, with the first example of each reason."""

    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    first_bad: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    """Held-out examples equal to a training example. A fraction split swaps such examples for training examples
    without a twin, so this is 0 unless the data has too few unique rows; a ``data.eval`` file is counted."""

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "dropped": dict(self.dropped), "first_bad": dict(self.first_bad),
                "duplicates": self.duplicates}


@dataclass
class PreparedData:
    """Examples split into train and eval, plus their tokenised forms once an objective asks."""

    train: list[Example]
    eval: list[Example]
    report: DataReport
    tokenized: dict[str, Any] = field(default_factory=dict)


def map_columns(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Rename the file's fields to the format's: ``columns = {format_field = "file_field"}``."""
    if not columns:
        return dict(row)
    out = dict(row)
    for wanted, present in columns.items():
        if present in row:
            out[wanted] = row[present]
    return out


def convert_rows(
    rows: Iterable[Row], fmt: DataFormat, section: DataSection, report: DataReport
) -> list[Example]:
    """Convert rows; count bad ones by reason; in strict mode stop at the first with file and row."""
    examples: list[Example] = []
    for row in rows:
        try:
            if "__error__" in row.data:
                raise RowError("unreadable row", str(row.data["__error__"]))
            mapped = map_columns(row.data, section.columns)
            produced = list(fmt.to_examples(mapped)) if hasattr(fmt, "to_examples") else [fmt.to_example(mapped)]
        except RowError as exc:
            where = f"{row.source}, row {row.index}"
            if section.strict:
                raise DataError(f"{where}: {exc} (data.strict = true stops at the first bad row)") from None
            report.dropped[exc.reason] += 1
            report.first_bad.setdefault(exc.reason, f"{where}: {exc}")
            continue
        for example in produced:
            example.meta.setdefault("source", f"{row.source}:{row.index}")
            examples.append(example)
        if section.limit and len(examples) >= section.limit:
            del examples[section.limit :]
            break
    return examples


def check_bad_fraction(report: DataReport, section: DataSection) -> None:
    """Fail when more rows than ``data.max_bad_fraction`` were dropped, listing reasons and a first example."""
    check_bad_fraction_values(report, section.max_bad_fraction)


def check_bad_fraction_values(report: DataReport, max_bad_fraction: float) -> None:
    """:func:`check_bad_fraction` with the threshold given directly (tokenisation re-checks with its drops)."""
    total = report.total
    if total == 0 or report.kept <= 0:
        raise DataError("no usable rows in data.train" + _reasons(report))
    bad = sum(report.dropped.values())
    if bad / total > max_bad_fraction:
        raise DataError(
            f"{bad} of {total} rows ({bad / total:.1%}) are unusable, over data.max_bad_fraction = "
            f"{max_bad_fraction:g} (fix the rows, or raise the threshold to accept the loss)" + _reasons(report)
        )


def _reasons(report: DataReport) -> str:
    if not report.dropped:
        return ""
    lines = [f"\n  - {reason}: {count} (first: {report.first_bad[reason]})" for reason, count in report.dropped.most_common()]
    return ":" + "".join(lines)


def example_key(example: Example) -> str:
    """What makes two examples the same: their kind and fields, not where they came from."""
    fields = [(k, v) for k, v in vars(example).items() if k != "meta"]
    return repr((type(example).__name__, fields))


def split_held_out(train: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example], int]:
    """Hold out ``fraction`` of the examples at random, keeping no example on both sides where the data allows:
    a held-out example equal to one kept for training is swapped for a training example that has no twin.
    Returns train, eval and how many held-out examples still equal a training example (too few unique rows
    to swap in). The split is unchanged for data without duplicates."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(train) * fraction))
    if n_eval >= len(train):
        raise DataError(f"data.eval = {fraction} leaves no training rows out of {len(train)}")
    keys = [example_key(example) for example in train]
    held, rest = order[:n_eval], order[n_eval:]
    trained_keys = {keys[i] for i in rest}
    twins = [i for i in held if keys[i] in trained_keys]
    if twins:
        counts = Counter(keys)
        unique = [j for j in rest if counts[keys[j]] == 1][: len(twins)]
        held = [i for i in held if keys[i] not in trained_keys] + unique + twins[len(unique):]
    chosen = set(held)
    kept = [ex for i, ex in enumerate(train) if i not in chosen]
    kept_keys = {keys[i] for i in range(len(train)) if i not in chosen}
    leaked = sum(1 for i in chosen if keys[i] in kept_keys)
    return kept, [train[i] for i in sorted(chosen)], leaked


def prepare_examples(section: DataSection, fmt: DataFormat, seed: int) -> PreparedData:
    """Read, convert, validate and split the recipe's data."""
    report = DataReport()
    train = convert_rows(read_rows(section.train, section.split), fmt, section, report)
    if isinstance(section.eval, (str, list)):
        eval_examples = convert_rows(read_rows(section.eval, "validation"), fmt, section, report)
        report.kept = len(train) + len(eval_examples)
        check_bad_fraction(report, section)
        trained_keys = {example_key(example) for example in train}
        report.duplicates = sum(1 for example in eval_examples if example_key(example) in trained_keys)
        return PreparedData(train, eval_examples, report)
    report.kept = len(train)
    check_bad_fraction(report, section)
    if isinstance(section.eval, float):
        train, eval_examples, report.duplicates = split_held_out(
            train, section.eval, section.seed if section.seed is not None else seed)
        return PreparedData(train, eval_examples, report)
    return PreparedData(train, [], report)
