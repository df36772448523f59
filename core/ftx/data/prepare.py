"""Turn the recipe's files into validated, split examples through the selected data format.

Rows stream through the format a row at a time; converted examples are kept in memory up to
:data:`SPILL_AT` and beyond that written to disk (:class:`~ftx.data.store.StoredExamples`), so
memory stays flat however large the data. What the split and the cache key need of each example
is a fingerprint (8 bytes to find twins, 16 for the content digest), not the example itself.

With ``data.cache`` on and local files, the converted, split examples are kept under
``$FTX_HOME/data/examples-<key>``; the key hashes the files' bytes (in order, with their paths,
which error messages name), the format, its options and code, ``[data]``'s conversion keys and the
split seed. A later preparation of the same inputs reads the report and the split from there
instead of converting again, and the tokenised cache is found from the stored digests without a
pass over the examples.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
import weakref
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftx_hookspecs import DataFormat, Example, RowError

from ..errors import DataError
from ..recipe.schema import DataSection, MixSource
from .mix import MixedExamples, _draw, _general_text_examples, mix_label, mixed_counts
from .sources import Row, expand, read_rows

SPILL_AT = 20_000
"""Examples held in memory before preparation writes them to disk and reads them back on demand."""

STORE_FORMAT = "1"


@dataclass
class DataReport:
    """What preparation kept and dropped, by reason, with the first example of each reason."""

    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    first_bad: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    """Held-out examples equal to a training example. A fraction split swaps such examples for training examples
    without a twin, so this is 0 unless the data has too few unique rows; a ``data.eval`` file is counted."""
    mixed: dict[str, int] = field(default_factory=dict)
    """With ``[data] mix``: training examples by source, ``{"task": n, "data.mix[0]": m, ...}`` (:mod:`ftx.data.mix`)."""

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        mixed = {"mixed": dict(self.mixed)} if self.mixed else {}
        return {"kept": self.kept, "dropped": dict(self.dropped), "first_bad": dict(self.first_bad),
                "duplicates": self.duplicates, **mixed}


@dataclass
class PreparedData:
    """Examples split into train and eval, plus their tokenised forms once an objective asks.

    ``train`` and ``eval`` are lists, or for data larger than :data:`SPILL_AT` examples (and for a
    large cache hit) :class:`~ftx.data.store.StoredExamples`: sequences read from disk on demand."""

    train: Sequence[Example]
    eval: Sequence[Example]
    report: DataReport
    tokenized: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict, repr=False)
    """Content digests of ``train`` and ``eval`` as prepared (see :meth:`current_digests`)."""
    _prepared: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), repr=False)

    def remember_digests(self, train: str, evals: str) -> None:
        """Record the splits' content digests, computed while preparing, for the cache key."""
        self.digests = {"train": train, "eval": evals}
        self._prepared = (id(self.train), len(self.train), id(self.eval), len(self.eval))

    def current_digests(self) -> dict[str, str] | None:
        """The recorded digests while ``train`` and ``eval`` are still the sequences prepared, else ``None``."""
        if not self.digests or self._prepared != (id(self.train), len(self.train), id(self.eval), len(self.eval)):
            return None
        return self.digests


def map_columns(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Rename the file's fields to the format's: ``columns = {format_field = "file_field"}``."""
    if not columns:
        return dict(row)
    out = dict(row)
    for wanted, present in columns.items():
        if present in row:
            out[wanted] = row[present]
    return out


def convert_stream(
    rows: Iterable[Row], fmt: DataFormat, section: DataSection, report: DataReport
) -> Iterator[Example]:
    """Convert rows one at a time; count bad ones by reason; in strict mode stop at the first with file and row."""
    count = 0
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
            yield example
            count += 1
            if section.limit and count >= section.limit:
                return


def convert_rows(
    rows: Iterable[Row], fmt: DataFormat, section: DataSection, report: DataReport
) -> list[Example]:
    """Convert rows; count bad ones by reason; in strict mode stop at the first with file and row."""
    return list(convert_stream(rows, fmt, section, report))


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


def fingerprint(example: Example) -> tuple[bytes, bytes]:
    """8 bytes of :func:`example_key` (twins in a split) and the 16-byte content digest of the cache key."""
    fields = [(k, v) for k, v in vars(example).items() if k != "meta"]
    text = repr((type(example).__name__, fields)).encode("utf-8", "surrogatepass")
    key = hashlib.blake2b(text, digest_size=8).digest()
    if example.meta.get("tools"):
        from .digest import example_digest

        return key, example_digest(example)
    return key, hashlib.blake2b(text, digest_size=16).digest()


def held_out_indices(keys: Any, fraction: float, seed: int) -> tuple[Any, Any, int]:
    """:func:`split_held_out` on example keys (``uint64`` fingerprints): kept and held-out indices, in order, and
    how many held-out examples equal a kept one. Memory is a few bytes per example."""
    import numpy as np

    n = len(keys)
    order_list = array("q", range(n))
    random.Random(seed).shuffle(order_list)  # the same permutation as shuffling a list
    order = np.frombuffer(order_list, dtype=np.int64)
    n_eval = max(1, round(n * fraction))
    if n_eval >= n:
        raise DataError(f"data.eval = {fraction} leaves no training rows out of {n}")
    held, rest = order[:n_eval], order[n_eval:]
    twin = np.isin(keys[held], keys[rest])
    if twin.any():
        twins = held[twin]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        once = counts[inverse] == 1
        unique = rest[once[rest]][: len(twins)]
        held = np.concatenate([held[~twin], unique, twins[len(unique):]])
    chosen = np.zeros(n, dtype=bool)
    chosen[held] = True
    leaked = int(np.count_nonzero(np.isin(keys[chosen], keys[~chosen])))
    return np.flatnonzero(~chosen), np.flatnonzero(chosen), leaked


def split_held_out(train: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example], int]:
    """Hold out ``fraction`` of the examples at random, keeping no example on both sides where the data allows:
    a held-out example equal to one kept for training is swapped for a training example that has no twin.
    Returns train, eval and how many held-out examples still equal a training example (too few unique rows
    to swap in). The split is unchanged for data without duplicates."""
    import numpy as np

    keys = np.frombuffer(b"".join(fingerprint(example)[0] for example in train), dtype=np.uint64)
    kept, held, leaked = held_out_indices(keys, fraction, seed)
    return [train[i] for i in kept.tolist()], [train[i] for i in held.tolist()], leaked


class _Collected:
    """Examples as they are converted: in memory up to :data:`SPILL_AT`, then on disk; their fingerprints."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder  # the cache entry being written, or None (a temporary folder if it grows)
        self.items: list[Example] | None = []
        self.writer: Any = None
        self.owner: Any = None
        self.keys = bytearray()
        self.digests = bytearray()
        self.count = 0

    def add(self, example: Example) -> None:
        key, digest = fingerprint(example)
        self.keys += key
        self.digests += digest
        self.count += 1
        if self.writer is not None:
            self.writer.add(example)
        if self.items is not None:
            self.items.append(example)
            if len(self.items) > SPILL_AT:
                self._spill()

    def _spill(self) -> None:
        from .store import ExampleWriter

        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="ftx-examples-"))
            self.owner = _TemporaryFolder(self.folder)
        self.writer = ExampleWriter(self.folder)
        for item in self.items or []:
            self.writer.add(item)
        self.items = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def select(self, indices: Any) -> Sequence[Example]:
        """The examples at ``indices`` (ascending), with their content digest."""
        from .store import StoredExamples

        digest = split_digest(self.digests, indices)
        if self.items is not None:
            items = self.items
            return [items[i] for i in indices.tolist()]
        assert self.folder is not None
        return StoredExamples(self.folder, indices, digest, owner=self.owner)


class _TemporaryFolder:
    """A folder removed when the last sequence reading it is gone (or at exit)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        weakref.finalize(self, shutil.rmtree, str(folder), True)


def split_digest(digests: bytes | bytearray, indices: Any) -> str:
    """:func:`ftx.data.cache.examples_digest` of the examples at ``indices``, from their stored digests."""
    import numpy as np

    table = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16)
    return hashlib.sha256(table[indices].tobytes()).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _format_identity(fmt: DataFormat) -> dict[str, Any] | None:
    """The format's class, options and source, or ``None`` when its options cannot be written down stably."""
    cls = type(fmt)
    options = getattr(fmt, "options", None)
    if options is not None and hasattr(options, "model_dump_json"):
        described = options.model_dump_json()
    else:
        described = repr(sorted((k, v) for k, v in vars(fmt).items()))
        if " at 0x" in described:
            return None
    try:
        source = hashlib.sha256(Path(inspect.getsourcefile(cls) or "").read_bytes()).hexdigest()
    except (OSError, TypeError):
        return None
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "options": described, "source": source}


def _local_files(spec: str | list[str]) -> list[Path] | None:
    files = [Path(item) for item in expand(spec)]
    return files if all(path.is_file() for path in files) else None


def source_key(section: DataSection, fmt: DataFormat, seed: int) -> tuple[str, dict[str, Any]] | None:
    """The key of the converted, split examples: the files' bytes and everything that shapes conversion and split;
    ``None`` when the inputs are not all local files (a hub dataset) or the format cannot be described."""
    train = _local_files(section.train)
    evals = _local_files(section.eval) if isinstance(section.eval, (str, list)) else []
    identity = _format_identity(fmt)
    if train is None or evals is None or identity is None:
        return None
    import ftx_hookspecs.examples as example_kinds

    here = Path(__file__).parent
    sources = [here / name for name in ("prepare.py", "sources.py", "store.py")] + [Path(example_kinds.__file__)]
    code = hashlib.sha256(b"".join(path.read_bytes() for path in sources) + STORE_FORMAT.encode()).hexdigest()
    parts = {
        "train": [[str(p.resolve()), _file_digest(p)] for p in train],
        "eval": [[str(p.resolve()), _file_digest(p)] for p in evals] if evals else section.eval,
        "format": section.format, "identity": identity, "columns": dict(sorted(section.columns.items())),
        "limit": section.limit, "strict": section.strict, "seed": section.seed if section.seed is not None else seed,
        "code": code, "python": sys.version_info[:2],
    }
    return "examples-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24], parts


def _load_prepared(folder: Path, section: DataSection) -> PreparedData | None:
    """A stored preparation, or ``None`` when missing or damaged (then it is rebuilt)."""
    import numpy as np

    from .store import StoredExamples

    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != STORE_FORMAT:
            return None
        sizes = manifest["sizes"]
        if any((folder / n).stat().st_size != size for n, size in sizes.items()):
            return None
        if (folder / "lists.pkl").is_file():  # a small preparation: both splits in one pickle
            train, evals = pickle.loads((folder / "lists.pkl").read_bytes())
            splits = {"train": train, "eval": evals}
        else:
            splits = {name: StoredExamples(folder, np.fromfile(folder / f"{name}.index", dtype=np.int64),
                                           manifest["digests"][name]) for name in ("train", "eval")}
        saved = manifest["report"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, AttributeError, ImportError, IndexError):
        return None  # unpickling a changed class raises these too: rebuilt
    report = DataReport(int(saved["kept"]), Counter(saved["dropped"]), dict(saved["first_bad"]), int(saved["duplicates"]))
    data = PreparedData(splits["train"], splits["eval"], report)
    data.remember_digests(manifest["digests"]["train"], manifest["digests"]["eval"])
    return data


def _convert_and_split(section: DataSection, fmt: DataFormat, seed: int, folder: Path | None) -> tuple[PreparedData, dict[str, Any]]:
    """The conversion itself: rows stream in, examples go to memory or ``folder``; returns the data and a manifest."""
    import numpy as np

    report = DataReport()
    train = _Collected(folder)
    for example in convert_stream(read_rows(section.train, section.split), fmt, section, report):
        train.add(example)
    train.close()
    all_train = np.arange(train.count, dtype=np.int64)
    if isinstance(section.eval, (str, list)):
        evals = _Collected(None)
        for example in convert_stream(read_rows(section.eval, "validation"), fmt, section, report):
            evals.add(example)
        evals.close()
        report.kept = train.count + evals.count
        check_bad_fraction(report, section)
        keys = np.frombuffer(train.keys, dtype=np.uint64)
        report.duplicates = int(np.count_nonzero(np.isin(np.frombuffer(evals.keys, dtype=np.uint64), keys)))
        data = PreparedData(train.select(all_train), evals.select(np.arange(evals.count, dtype=np.int64)), report)
        data.remember_digests(split_digest(train.digests, all_train),
                              split_digest(evals.digests, np.arange(evals.count, dtype=np.int64)))
        return data, {}  # a separate eval file is not stored with the train examples: not cached
    report.kept = train.count
    check_bad_fraction(report, section)
    held = np.zeros(0, dtype=np.int64)
    kept = all_train
    if isinstance(section.eval, float):
        keys = np.frombuffer(train.keys, dtype=np.uint64)
        kept, held, report.duplicates = held_out_indices(keys, section.eval, section.seed if section.seed is not None else seed)
    data = PreparedData(train.select(kept), train.select(held), report)
    manifest = {"indices": {"train": kept, "eval": held}, "total": train.count,
                "digests": {"train": split_digest(train.digests, kept), "eval": split_digest(train.digests, held)}}
    data.remember_digests(manifest["digests"]["train"], manifest["digests"]["eval"])
    return data, manifest


def prepare_examples(section: DataSection, fmt: DataFormat, seed: int) -> PreparedData:
    """Read, convert, validate and split the recipe's data (from the cache when the same inputs were prepared),
    then draw any ``[data] mix`` into the training split (:mod:`ftx.data.mix`)."""
    return apply_mix(_prepare_task(section, fmt, seed), section, seed)


def _prepare_task(section: DataSection, fmt: DataFormat, seed: int) -> PreparedData:
    """The task's own examples, split: what :func:`prepare_examples` does before the mix."""
    from .digest import data_cache_root

    keyed = source_key(section, fmt, seed) if section.cache and not isinstance(section.eval, (str, list)) else None
    if keyed is None:
        return _convert_and_split(section, fmt, seed, None)[0]
    key, parts = keyed
    root = data_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / key
    if folder.is_dir():
        found = _load_prepared(folder, section)
        if found is not None:
            check_bad_fraction(found.report, section)
            return found
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        data, manifest = _convert_and_split(section, fmt, seed, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if isinstance(data.train, list):
            (tmp / "lists.pkl").write_bytes(pickle.dumps([data.train, data.eval], protocol=pickle.HIGHEST_PROTOCOL))
        for name, indices in manifest["indices"].items():
            indices.tofile(tmp / f"{name}.index")
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps({
            "format": STORE_FORMAT, "key": key, "parts": parts, "created": time.time(), "sizes": sizes,
            "total": manifest["total"], "digests": manifest["digests"], "report": data.report.as_dict(),
        }, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # only slower next time
        return data
    for split in (data.train, data.eval):
        if hasattr(split, "folder"):
            split.folder = folder  # its files are open already; later readers find them here
    return data


def _file_examples(item: MixSource, index: int, max_bad_fraction: float) -> list[Example]:
    """Every example of a mixed data set, converted by its format (bad rows counted as for ``data.train``)."""
    selected = getattr(item, "_selected", None)
    if selected is None:
        raise DataError(f"{mix_label(index)}: its format was not checked; load the recipe with ftx's recipe loader")
    fmt = selected.build()
    section = DataSection.model_validate({"format": selected.name, "train": item.train or "", "columns": item.columns,
                                          "eval": None})
    report = DataReport()
    from .sources import read_rows

    examples = list(convert_stream(read_rows(item.train or "", "train"), fmt, section, report))
    report.kept = len(examples)
    bad = sum(report.dropped.values())
    if not examples:
        raise DataError(f"{mix_label(index)}.train: no usable rows" + _reasons(report))
    if bad / report.total > max_bad_fraction:
        raise DataError(f"{mix_label(index)}.train: {bad} of {report.total} rows are unusable, over "
                        f"data.max_bad_fraction = {max_bad_fraction:g}" + _reasons(report))
    return examples


def apply_mix(data: Any, section: DataSection, seed: int) -> Any:
    """``data`` with ``[data] mix`` drawn into its training split (a new :class:`~ftx.data.prepare.PreparedData`);
    ``data`` itself when there is no mix. The eval split is untouched."""
    if not section.mix:
        return data
    from .digest import example_digest, examples_digest

    task = data.train
    counts = mixed_counts(len(task), [item.ratio for item in section.mix])
    mixed: list[Example] = []
    per_source: dict[str, int] = {}
    content = hashlib.sha256(b"ftx-mix-1")
    for index, (item, count) in enumerate(zip(section.mix, counts)):
        label = mix_label(index)
        if item.source == "general-text":
            drawn = _general_text_examples(item, count, seed + index)
        else:
            drawn = _draw(_file_examples(item, index, section.max_bad_fraction), count, seed + index)
        for example in drawn:
            example.meta["mix"] = label
            content.update(example_digest(example))
        mixed.extend(drawn)
        per_source[label] = count
    total = len(task) + len(mixed)
    places = sorted(random.Random(f"mix-places-{seed}").sample(range(total), len(mixed)))
    content.update(",".join(map(str, places)).encode())
    recorded = data.current_digests() if hasattr(data, "current_digests") else None
    task_digest = recorded["train"] if recorded else examples_digest(task)
    eval_digest = recorded["eval"] if recorded else examples_digest(data.eval)
    digest = hashlib.sha256(f"{task_digest}:{content.hexdigest()}".encode()).hexdigest()
    if isinstance(task, list):
        train: Sequence[Example] = []
        it = iter(task)
        at = set(places)
        source = iter(mixed)
        train = [next(source) if i in at else next(it) for i in range(total)]
    else:
        train = MixedExamples(task, mixed, places, digest)
    report = data.report
    report.mixed = {"task": len(task), **per_source}
    out = PreparedData(train, data.eval, report)
    out.remember_digests(digest, eval_digest)
    return out
