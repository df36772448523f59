"""The preparation cache: tokenised examples stored under ``$FTX_HOME/data/<key>``.

Tokenising with a chat template renders every conversation several times (once per assistant
turn, to locate it), which dominates preparation. The key hashes everything that shapes the
result, so a second run with the same inputs reads the stored ids and any change rebuilds:

* the data: every converted example (so the files' contents, ``[data.columns]``, the format and
  its options, ``limit`` and the train/eval split all count), in order;
* the tokenizer: its serialized vocabulary, merges, normalizer and added tokens, its special tokens;
* the chat template text;
* the options: ``max_length``, ``overlength``, ``train_on``, ``strict``;
* the code: this module's format version and the source of the tokenising modules.

Tokens stream to disk a chunk at a time (:mod:`ftx.data.encode`) as flat ``int32`` ids and labels
with ``int64`` offsets per split, and are read back lazily as :class:`~ftx.data.store.TokenizedSplit`
(NumPy arrays per example; no Python list of all tokens is ever built), so a hit costs reading the
offsets and a miss holds one chunk at a time. The manifest keeps the per-split totals (tokens,
trained tokens, answers cut at ``max_length``) that summaries need.

Entries are written to a temporary folder and renamed into place, so a crashed or concurrent
preparation never leaves a half-written entry that a later run would trust; the manifest records
every file's size, and an entry whose files were cut short or changed since is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftx_hookspecs import ChatExample, Example

from ..errors import DataError
from . import chat as chat_module
from .digest import data_cache_root, examples_digest
from .tokenize import IGNORE_INDEX, Tokenized

CACHE_FORMAT = "2"
"""Bump when the stored layout changes (2: streamed arrays, per-split totals, per-example digests in the key)."""

IN_MEMORY_TOKENS = 1 << 22
"""Splits of up to this many tokens (32 MiB of ids and labels) are held in memory; larger ones are read from disk."""

_CODE_MODULES = ("tokenize.py", "chat.py", "encode.py", "layout.py", "cache.py")
"""The modules whose source is part of the key: a change to how tokens are made rebuilds every entry."""


@dataclass
class TokenizeResult:
    """Tokenised train and eval examples, what was dropped and why, and whether the cache served them.

    ``train`` and ``eval`` are :class:`~ftx.data.store.TokenizedSplit` sequences of :class:`Tokenized`
    (read from disk on demand; ``.features()`` gives ``Trainer`` a lazy dataset of arrays)."""

    train: Sequence[Tokenized]
    eval: Sequence[Tokenized]
    dropped: dict[str, int] = field(default_factory=dict)
    first_bad: dict[str, str] = field(default_factory=dict)
    key: str = ""
    hit: bool = False
    path: Path | None = None


def tokenizer_digest(tokenizer: Any) -> str:
    """A hash of what makes the tokenizer's ids: its serialized form where it has one, else its vocabulary."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # padding and truncation are call-time settings the last call left behind (a left-padded
        # generation, say), not part of what ids the tokenizer makes: they must not change the key.
        # They come before "added_tokens" in the serialized form, so hashing from there leaves them out
        # without parsing a vocabulary of tens of thousands of entries.
        serialized = backend.to_str()
        at = serialized.find('"added_tokens":')
        if at >= 0:
            h.update(serialized[at:].encode())
        else:
            parsed = json.loads(serialized)
            parsed.pop("padding", None)
            parsed.pop("truncation", None)
            h.update(json.dumps(parsed, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = {k: str(v) for k, v in getattr(tokenizer, "special_tokens_map", {}).items()}
    h.update(json.dumps(specials, sort_keys=True).encode())
    h.update(str(getattr(tokenizer, "eos_token_id", None)).encode())
    return h.hexdigest()


def _code_digest() -> str:
    folder = Path(chat_module.__file__).parent
    source = b"".join((folder / name).read_bytes() for name in _CODE_MODULES)
    return hashlib.sha256(source + CACHE_FORMAT.encode()).hexdigest()


def cache_key(
    tokenizer: Any, train: Sequence[Example], evals: Sequence[Example], options: dict[str, Any],
    digests: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The cache key and the parts it was made from (stored with the entry, for people debugging a miss).

    ``digests``: the splits' :func:`examples_digest` values where preparation already computed them."""
    parts = {
        "train": digests["train"] if digests else examples_digest(train),
        "eval": digests["eval"] if digests else examples_digest(evals),
        "tokenizer": tokenizer_digest(tokenizer),
        "template": hashlib.sha256(str(getattr(tokenizer, "chat_template", None) or "").encode()).hexdigest(),
        "options": dict(sorted(options.items())),
        "code": _code_digest(),
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
    return key, parts


def stop_ids(tokenizer: Any) -> set[int]:
    """End-of-sequence and end-of-turn ids: an answer cut at ``max_length`` that ends on one of them is whole."""
    stops = {i for i in (getattr(tokenizer, "eos_token_id", None),) if isinstance(i, int)}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        found = tokenizer.convert_tokens_to_ids(token) if hasattr(tokenizer, "convert_tokens_to_ids") else None
        if isinstance(found, int) and found != getattr(tokenizer, "unk_token_id", None):
            stops.add(found)
    return stops


class _SplitWriter:
    """Collects one split's chunks: to files (a cache entry) or in memory; counts the totals as it goes."""

    def __init__(self, folder: Path | None, name: str, stops: set[int], max_length: int) -> None:
        import numpy as np

        self.np = np
        self.folder, self.name = folder, name
        self.stops = np.asarray(sorted(stops), dtype=np.int64)
        self.max_length = max_length
        self.lengths: list[Any] = []
        self.parts: list[tuple[Any, Any]] = []
        self.stats = {"tokens": 0, "trained": 0, "cut": 0, "max_length": max_length}
        self.handles = None
        if folder is not None:
            self.handles = (open(folder / f"{name}.ids", "wb"), open(folder / f"{name}.labels", "wb"))  # noqa: SIM115

    def add(self, chunk: Any) -> None:
        np = self.np
        if self.handles is not None:
            chunk.ids.tofile(self.handles[0])
            chunk.labels.tofile(self.handles[1])
        if self.handles is None or self.stats["tokens"] + len(chunk.ids) <= IN_MEMORY_TOKENS:
            self.parts.append((chunk.ids, chunk.labels))
        else:
            self.parts = []  # too large to hold: read back from the files
        self.lengths.append(chunk.lengths)
        self.stats["tokens"] += int(len(chunk.ids))
        self.stats["trained"] += int(np.count_nonzero(chunk.labels != IGNORE_INDEX))
        if len(chunk.lengths):
            last = np.cumsum(chunk.lengths) - 1
            full = (chunk.lengths >= self.max_length) & (chunk.lengths > 0)
            ends = last[full]
            self.stats["cut"] += int(np.count_nonzero((chunk.labels[ends] != IGNORE_INDEX)
                                                      & ~np.isin(chunk.ids[ends], self.stops)))

    def finish(self) -> Any:
        """The split as a :class:`~ftx.data.store.TokenizedSplit` (files opened before the entry is renamed)."""
        from .store import TokenizedSplit

        np = self.np
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))).astype(np.int64)
        if self.handles is not None:
            for handle in self.handles:
                handle.close()
            assert self.folder is not None
            offsets.tofile(self.folder / f"{self.name}.offsets")
            if self.stats["tokens"] > IN_MEMORY_TOKENS:
                return TokenizedSplit(self.folder, self.name, offsets, stats=self.stats)
        ids = np.concatenate([p[0] for p in self.parts]) if self.parts else np.zeros(0, dtype=np.int32)
        labels = np.concatenate([p[1] for p in self.parts]) if self.parts else np.zeros(0, dtype=np.int32)
        return TokenizedSplit(self.folder, self.name, offsets, arrays=(ids, labels), stats=self.stats)

    def abandon(self) -> None:
        if self.handles is not None:
            for handle in self.handles:
                handle.close()


def _tokenize_splits(
    tokenizer: Any, splits: dict[str, Sequence[Example]], folder: Path | None, options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, int], dict[str, str]]:
    """Tokenise each split chunk by chunk into ``folder`` (or memory); returns the splits and the drops."""
    from .encode import ChunkEncoder

    dropped: dict[str, int] = {}
    first_bad: dict[str, str] = {}
    max_length = int(options["max_length"])
    encoder = ChunkEncoder(tokenizer, max_length, options["overlength"], options["train_on"], dropped, first_bad,
                           bool(options["strict"]))
    stops = stop_ids(tokenizer)
    out: dict[str, Any] = {}
    for name, examples in splits.items():
        writer = _SplitWriter(folder, name, stops, max_length)
        try:
            for chunk in encoder.chunks(examples):
                writer.add(chunk)
        except BaseException:
            writer.abandon()
            raise
        out[name] = writer.finish()
    return out, dropped, first_bad


def _read_offsets(folder: Path, name: str, count: int) -> Any:
    """One split's offsets; offsets that disagree with the ids and labels files are a ValueError."""
    import numpy as np

    offsets = np.fromfile(folder / f"{name}.offsets", dtype=np.int64)
    ids_size = (folder / f"{name}.ids").stat().st_size
    labels_size = (folder / f"{name}.labels").stat().st_size
    if len(offsets) != count + 1 or offsets[0] != 0 or 4 * int(offsets[-1]) != ids_size or labels_size != ids_size:
        raise ValueError(f"cache entry {folder} is damaged ({name} split sizes disagree)")
    if np.any(np.diff(offsets) < 0):
        raise ValueError(f"cache entry {folder} is damaged ({name} offsets out of order)")
    return offsets


def _open_split(folder: Path, name: str, count: int, stats: dict[str, int]) -> Any:
    """A stored split: read whole when small (a later change to the files cannot reach it), else read on demand."""
    import numpy as np

    from .store import TokenizedSplit

    offsets = _read_offsets(folder, name, count)
    if int(offsets[-1]) <= IN_MEMORY_TOKENS:
        arrays = (np.fromfile(folder / f"{name}.ids", dtype=np.int32), np.fromfile(folder / f"{name}.labels", dtype=np.int32))
        return TokenizedSplit(folder, name, offsets, arrays=arrays, stats=stats)
    return TokenizedSplit(folder, name, offsets, stats=stats)


def load_entry(folder: Path) -> TokenizeResult | None:
    """A stored entry, or ``None`` when it is missing or unreadable (then it is rebuilt)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != CACHE_FORMAT:
            return None
        sizes = manifest.get("sizes")
        if not isinstance(sizes, dict) or any((folder / n).stat().st_size != size for n, size in sizes.items()):
            return None  # a file cut short or grown since it was written: rebuilt
        splits = {name: _open_split(folder, name, int(manifest["counts"][name]), dict(manifest["stats"][name]))
                  for name in ("train", "eval")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return TokenizeResult(splits["train"], splits["eval"], dict(manifest["dropped"]), dict(manifest["first_bad"]),
                          manifest["key"], True, folder)


def _store(folder: Path, tokenizer: Any, train: Sequence[Example], evals: Sequence[Example], key: str,
           parts: dict[str, Any], options: dict[str, Any]) -> TokenizeResult | None:
    """Tokenise into a temporary sibling folder and rename it into place; ``None`` when the disk refuses."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        splits, dropped, first_bad = _tokenize_splits(tokenizer, {"train": train, "eval": evals}, tmp, options)
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        manifest = {
            "format": CACHE_FORMAT, "key": key, "parts": parts, "created": time.time(),
            "counts": {name: len(split) for name, split in splits.items()}, "sizes": sizes,
            "stats": {name: split.stats for name, split in splits.items()},
            "dropped": dropped, "first_bad": first_bad,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a cache that cannot be written is only slower
        return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for split in splits.values():
        split.folder = folder
    return TokenizeResult(splits["train"], splits["eval"], dropped, first_bad, key, False, folder)


def tokenize_cached(
    tokenizer: Any,
    train: Sequence[Example],
    evals: Sequence[Example],
    *,
    max_length: int,
    overlength: str = "truncate",
    train_on: str = "assistant",
    strict: bool = False,
    use_cache: bool = True,
    digests: dict[str, str] | None = None,
) -> TokenizeResult:
    """Tokenise train and eval examples through the cache (see the module docstring for the key).

    ``digests``: the content digests of ``train`` and ``eval`` when the caller has them
    (:meth:`~ftx.data.prepare.PreparedData.current_digests`), so the key needs no pass over the examples."""
    options = {"max_length": max_length, "overlength": overlength, "train_on": train_on, "strict": strict}
    if use_cache:
        key, parts = cache_key(tokenizer, train, evals, options, digests)
        folder = data_cache_root() / key
        if folder.is_dir():
            found = load_entry(folder)
            if found is not None:
                return found
        stored = _store(folder, tokenizer, train, evals, key, parts, options)
        if stored is not None:
            return stored
    splits, dropped, first_bad = _tokenize_splits(tokenizer, {"train": train, "eval": evals}, None, options)
    return TokenizeResult(splits["train"], splits["eval"], dropped, first_bad, "", False, None)


def cut_answers(items: Sequence[Tokenized], max_length: int, tokenizer: Any) -> int:
    """How many examples were cut inside a trained answer: full length, ending on a trained token that is not the
    end of a turn (an answer that ends exactly at the limit keeps its end-of-turn token and is not counted)."""
    stats = getattr(items, "stats", None)
    if isinstance(stats, dict) and stats.get("max_length") == max_length and isinstance(stats.get("cut"), int):
        return int(stats["cut"])  # counted while tokenising, by the same rule
    stops = stop_ids(tokenizer)
    return sum(1 for t in items if len(t.input_ids) >= max_length and t.labels and t.labels[-1] != IGNORE_INDEX
               and t.input_ids[-1] not in stops)


def tokenize_prepared(
    data: Any, tokenizer: Any, data_cfg: dict[str, Any], train_on: str, echo: Any = None
) -> TokenizeResult:
    """Tokenise a run's :class:`~ftx.data.prepare.PreparedData` as ``[data]`` says, and account for drops.

    Examples dropped here (over-length, nothing left to train) join the data report's per-reason
    counts and the ``max_bad_fraction`` check, so a run that loses too much fails before training.
    """
    from .prepare import check_bad_fraction_values

    result = tokenize_cached(
        tokenizer, data.train, data.eval,
        max_length=int(data_cfg["max_length"]), overlength=str(data_cfg.get("overlength", "truncate")),
        train_on=train_on, strict=bool(data_cfg.get("strict", False)), use_cache=bool(data_cfg.get("cache", True)),
        digests=data.current_digests() if hasattr(data, "current_digests") else None,
    )
    report = getattr(data, "report", None)
    if report is not None and result.dropped:
        report.kept -= sum(result.dropped.values())
        for reason, count in result.dropped.items():
            report.dropped[reason] += count
            report.first_bad.setdefault(reason, result.first_bad.get(reason, ""))
        check_bad_fraction_values(report, float(data_cfg.get("max_bad_fraction", 0.05)))
    if not result.train:
        raise DataError(f"no training example left after tokenisation (dropped: {result.dropped})")
    if echo is not None:
        source = f"cache hit {result.path}" if result.hit else ("cached in " + str(result.path) if result.path else "not cached")
        echo(f"  tokenised: {len(result.train)} train, {len(result.eval)} eval examples ({source})"
             + (f"; dropped {result.dropped}" if result.dropped else ""))
        max_length = int(data_cfg["max_length"])
        chat = any(isinstance(example, ChatExample) for example in getattr(data, "train", []))
        cut = cut_answers(result.train, max_length, tokenizer) if chat else 0  # plain text is cut as a matter of course
        if cut:
            echo(f"warning: {cut} of {len(result.train)} training examples end inside an answer cut at data.max_length = "
                 f"{max_length}; they train without their end-of-turn token, which teaches the model not to stop "
                 "(raise data.max_length, or set data.overlength = 'drop')")
    data.tokenized = {"train": result.train, "eval": result.eval, "key": result.key}
    return result
