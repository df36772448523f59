"""Read raw rows from local files (json, jsonl, csv, tsv, parquet, txt, gzip, globs) or a hub dataset."""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError


@dataclass(frozen=True)
class Row:
    """One raw record and where it came from, so errors can name file and row."""

    data: dict[str, Any]
    source: str
    index: int
    """1-based line number for line formats, else 1-based record number."""


def expand(spec: str | list[str]) -> list[str]:
    """Expand globs; hub ids pass through unchanged."""
    specs = spec if isinstance(spec, list) else [spec]
    out: list[str] = []
    for item in specs:
        if glob.has_magic(item):
            matches = sorted(glob.glob(item))
            if not matches:
                raise DataError(f"no file matches {item}")
            out.extend(matches)
        else:
            out.append(item)
    return out


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115


def _data_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_file(path: Path) -> Iterator[Row]:
    """Yield rows of one local file, by its extension."""
    suffix = _data_suffix(path)
    source = str(path)
    if suffix == ".jsonl":
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Row({"__error__": f"invalid JSON: {exc.msg}"}, source, lineno)
                    continue
                yield Row(value if isinstance(value, dict) else {"__error__": "line is not a JSON object"}, source, lineno)
    elif suffix == ".json":
        with _open_text(path) as handle:
            try:
                value = json.load(handle)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        if isinstance(value, dict):
            lists = [v for v in value.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(f"{path}: expected a JSON array of records, or an object holding one array")
            value = lists[0]
        if not isinstance(value, list):
            raise DataError(f"{path}: expected a JSON array of records")
        for index, item in enumerate(value, 1):
            yield Row(item if isinstance(item, dict) else {"__error__": "record is not a JSON object"}, source, index)
    elif suffix in (".csv", ".tsv"):
        # TSV has no quoting: a '"' inside a field is text (quote-aware reading would merge rows)
        tsv = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
        with _open_text(path) as handle:
            reader = csv.DictReader(handle, **(tsv if suffix == ".tsv" else {"delimiter": ","}))
            for record in reader:
                lineno = reader.line_num
                if None in record:
                    yield Row({"__error__": f"{len(record) - 1 + len(record[None])} fields, the header has "
                               f"{len(reader.fieldnames or [])}"}, source, lineno)
                    continue
                yield Row(dict(record), source, lineno)
    elif suffix == ".txt":
        with _open_text(path) as handle:
            yield Row({"text": handle.read()}, source, 1)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, record in enumerate(pq.read_table(path).to_pylist(), 1):
            yield Row(record, source, index)
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .json, .jsonl, .csv, .tsv, .parquet or .txt (optionally .gz)")


def read_hub(dataset_id: str, split: str) -> Iterator[Row]:
    """Rows of a hub dataset; only reached when a recipe names one."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # noqa: BLE001 - network and hub errors vary by version
        raise DataError(f"cannot load hub dataset {dataset_id!r} (split {split!r}): {exc}") from exc
    for index, record in enumerate(ds, 1):
        yield Row(dict(record), dataset_id, index)


def read_rows(spec: str | list[str], split: str = "train") -> Iterator[Row]:
    """Rows from every file (or hub dataset) the recipe names, in order."""
    for item in expand(spec):
        path = Path(item)
        if path.exists():
            yield from read_file(path)
        else:
            yield from read_hub(item, split)
