"""Read raw rows from local files (json, jsonl, csv, tsv, parquet, txt, gzip, globs) or a hub dataset."""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import json
import zlib
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


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _open_text(path: Path) -> io.TextIOBase:
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline=None)  # a leading BOM is dropped


def _data_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _not_utf8(path: Path, offset: int, byte: int, line: int | None = None) -> str:
    where = f"line {line}, " if line is not None else ""
    return (f"{path}: not UTF-8 text ({where}byte 0x{byte:02x} at byte offset {offset}); "
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")


def _first_bad_byte(path: Path) -> tuple[int, int, int]:
    """``(offset, byte, line)`` of the first byte that is not UTF-8, scanning the (decompressed) file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with _open_binary(path) as handle:
        while chunk := handle.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # the decoder keeps up to 3 bytes of an unfinished character from the previous chunk
                pending = len(exc.object) - len(chunk)  # these bytes (no newline among them) came earlier
                return offset + exc.start - pending, exc.object[exc.start], line + chunk[: max(0, exc.start - pending)].count(b"\n")
            line += chunk.count(b"\n")
            offset += len(chunk)
    return offset, 0, line


def _jsonl_rows(path: Path, source: str) -> Iterator[Row]:
    """JSON lines read as bytes, so a bad byte names its line and offset and the rest of the file still reads."""
    offset = 0
    with _open_binary(path) as handle:
        for lineno, raw in enumerate(handle, 1):
            start, offset = offset, offset + len(raw)
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):  # saved "UTF-8 with BOM" (Windows editors)
                raw = raw[len(codecs.BOM_UTF8):]
                start += len(codecs.BOM_UTF8)
            nul = raw.find(0)
            if nul >= 0:
                raise DataError(f"{path} is a binary file, not JSON lines text (NUL byte at byte offset "
                                f"{start + nul}, line {lineno}); give a .jsonl file of JSON objects")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Row({"__error__": f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte offset "
                           f"{start + exc.start} of the file)"}, source, lineno)
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row({"__error__": f"invalid JSON: {exc.msg}"}, source, lineno)
                continue
            except RecursionError:
                yield Row({"__error__": "JSON nested too deeply to read"}, source, lineno)
                continue
            yield Row(value if isinstance(value, dict) else {"__error__": "line is not a JSON object"}, source, lineno)


def _json_rows(path: Path, source: str) -> Iterator[Row]:
    with _open_text(path) as handle:
        try:
            value = json.load(handle)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        except RecursionError:
            raise DataError(f"{path}: JSON nested too deeply to read; flatten the records") from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON array of records, or an object holding one array")
        value = lists[0]
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON array of records")
    for index, item in enumerate(value, 1):
        yield Row(item if isinstance(item, dict) else {"__error__": "record is not a JSON object"}, source, index)


def _table_rows(path: Path, source: str, suffix: str) -> Iterator[Row]:
    # TSV has no quoting: a '"' inside a field is text (quote-aware reading would merge rows)
    tsv = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    with _open_text(path) as handle:
        try:
            reader = csv.DictReader(handle, **(tsv if suffix == ".tsv" else {"delimiter": ","}))
            for record in reader:
                lineno = reader.line_num
                if None in record:
                    yield Row({"__error__": f"{len(record) - 1 + len(record[None])} fields, the header has "
                               f"{len(reader.fieldnames or [])}"}, source, lineno)
                    continue
                yield Row(dict(record), source, lineno)
        except csv.Error as exc:
            raise DataError(f"{path}: not readable as {suffix[1:].upper()} at line {reader.line_num}: {exc}") from None


def _parquet_rows(path: Path, source: str) -> Iterator[Row]:
    """Rows of a Parquet file, read a batch of rows at a time (memory does not grow with the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(exc: Exception) -> DataError:
        first = (str(exc).splitlines() or [""])[0]
        return DataError(f"{path} is not a readable Parquet file ({first}); give a Parquet file or rename it "
                         "to its real format")

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        index = 0
        for batch in batches:
            for record in batch.to_pylist():
                index += 1
                yield Row(record, source, index)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(exc) from None


def _rows_by_suffix(path: Path, suffix: str) -> Iterator[Row]:
    source = str(path)
    if suffix == ".jsonl":
        yield from _jsonl_rows(path, source)
    elif suffix == ".json":
        yield from _json_rows(path, source)
    elif suffix in (".csv", ".tsv"):
        yield from _table_rows(path, source, suffix)
    elif suffix == ".txt":
        with _open_text(path) as handle:
            yield Row({"text": handle.read()}, source, 1)
    elif suffix == ".parquet":
        yield from _parquet_rows(path, source)
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .json, .jsonl, .csv, .tsv, "
                        ".parquet or .txt (optionally .gz)")


TEXT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt")


def sniff(path: Path) -> str | None:
    """What is visibly wrong with a local data file from its first bytes, or ``None``: cheap enough for
    ``ftx validate`` (a binary file named as text, a .gz that is not gzip, a .parquet that is not Parquet)."""
    if path.is_dir():
        return "is a folder, not a data file; name the files in it (a glob such as '<folder>/*.jsonl' works)"
    suffix = _data_suffix(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192)
        if path.suffix.lower() == ".gz":
            if head and not head.startswith(b"\x1f\x8b"):
                return "is not gzip-compressed although its name ends in .gz; compress it or drop the .gz"
            return None  # the compressed text is checked when it is read
        if suffix == ".parquet":
            if head and not head.startswith(b"PAR1"):
                return "is not a Parquet file (no PAR1 magic); give a Parquet file or rename it to its real format"
            return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if suffix in TEXT_SUFFIXES and b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"is a binary file, not {suffix[1:].upper()} text (NUL byte at byte offset {head.index(0)})"
    return None


def read_file(path: Path) -> Iterator[Row]:
    """Yield rows of one local file, by its extension; a damaged file is a :class:`DataError` naming it."""
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file; name the files in it (a glob such as "
                        f"'{path}/*.jsonl' works)")
    suffix = _data_suffix(path)
    try:
        yield from _rows_by_suffix(path, suffix)
    except UnicodeDecodeError:
        offset, byte, line = _first_bad_byte(path)
        raise DataError(_not_utf8(path, offset, byte, line)) from None
    except gzip.BadGzipFile:
        raise DataError(f"{path} is not gzip-compressed although its name ends in .gz; compress it or "
                        "drop the .gz") from None
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged or truncated gzip data ({exc}); compress the file again") from None
    except RecursionError:
        raise DataError(f"{path}: data nested too deeply to read") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a data file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_hub(dataset_id: str, split: str) -> Iterator[Row]:
    """Rows of a hub dataset; only reached when a recipe names one."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # network and hub errors vary by version
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
