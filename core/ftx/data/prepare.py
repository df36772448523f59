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

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "dropped": dict(self.dropped), "first_bad": dict(self.first_bad)}


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


def prepare_examples(section: DataSection, fmt: DataFormat, seed: int) -> PreparedData:
    """Read, convert, validate and split the recipe's data."""
    report = DataReport()
    train = convert_rows(read_rows(section.train, section.split), fmt, section, report)
    if isinstance(section.eval, (str, list)):
        eval_examples = convert_rows(read_rows(section.eval, "validation"), fmt, section, report)
        report.kept = len(train) + len(eval_examples)
        check_bad_fraction(report, section)
        return PreparedData(train, eval_examples, report)
    report.kept = len(train)
    check_bad_fraction(report, section)
    if isinstance(section.eval, float):
        order = list(range(len(train)))
        random.Random(section.seed if section.seed is not None else seed).shuffle(order)
        n_eval = max(1, round(len(train) * section.eval))
        if n_eval >= len(train):
            raise DataError(f"data.eval = {section.eval} leaves no training rows out of {len(train)}")
        held = set(order[:n_eval])
        eval_examples = [train[i] for i in sorted(held)]
        train = [ex for i, ex in enumerate(train) if i not in held]
        return PreparedData(train, eval_examples, report)
    return PreparedData(train, [], report)
