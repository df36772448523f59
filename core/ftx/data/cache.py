"""The preparation cache: tokenised examples stored under ``$FTX_HOME/data/<key>``.

Tokenising with a chat template renders every conversation several times (once per assistant
turn, to locate it), which dominates preparation. The key hashes everything that shapes the
result, so a second run with the same inputs reads the stored ids and any change rebuilds:

* the data: every converted example (so the files' contents, ``[data.columns]``, the format and
  its options, ``limit`` and the train/eval split all count), in order;
* the tokenizer: its serialized vocabulary, merges, normalizer and added tokens, its special tokens;
* the chat template text;
* the options: ``max_length``, ``overlength``, ``train_on``, ``strict``;
* the code: this module's format version and the source of :mod:`ftx.data.tokenize`.

Entries are written to a temporary folder and renamed into place, so a crashed or concurrent
preparation never leaves a half-written entry that a later run would trust; the manifest records
every file's size, and an entry whose files were cut short or changed since is rebuilt.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftx_hookspecs import ChatExample, Example

from ..errors import DataError
from ..paths import ftx_home
from . import chat as chat_module
from . import tokenize as tokenize_module
from .tokenize import Tokenized, tokenize_all

CACHE_FORMAT = "1"
"""Bump when the stored layout changes."""


@dataclass
class TokenizeResult:
    """Tokenised train and eval examples, what was dropped and why, and whether the cache served them."""

    train: list[Tokenized]
    eval: list[Tokenized]
    dropped: dict[str, int] = field(default_factory=dict)
    first_bad: dict[str, str] = field(default_factory=dict)
    key: str = ""
    hit: bool = False
    path: Path | None = None


def examples_digest(examples: Sequence[Example]) -> str:
    """A hash of the examples' content (kind and fields, not where they came from), in order."""
    h = hashlib.sha256()
    for example in examples:
        # repr of plain str/list/dict values is exact and much faster than JSON; a different key
        # order from a changed converter only costs a rebuild
        fields = [(k, v) for k, v in vars(example).items() if k != "meta"]
        if example.meta.get("tools"):  # the tool list is rendered into the prompt
            fields.append(("tools", example.meta["tools"]))
        h.update(repr((type(example).__name__, fields)).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """A hash of what makes the tokenizer's ids: its serialized form where it has one, else its vocabulary."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # padding and truncation are call-time settings the last call left behind (a left-padded
        # generation, say), not part of what ids the tokenizer makes: they must not change the key
        serialized = json.loads(backend.to_str())
        serialized.pop("padding", None)
        serialized.pop("truncation", None)
        h.update(json.dumps(serialized, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = {k: str(v) for k, v in getattr(tokenizer, "special_tokens_map", {}).items()}
    h.update(json.dumps(specials, sort_keys=True).encode())
    h.update(str(getattr(tokenizer, "eos_token_id", None)).encode())
    return h.hexdigest()


def _code_digest() -> str:
    source = Path(tokenize_module.__file__).read_bytes() + Path(chat_module.__file__).read_bytes()
    return hashlib.sha256(source + CACHE_FORMAT.encode()).hexdigest()


def cache_key(
    tokenizer: Any, train: Sequence[Example], evals: Sequence[Example], options: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The cache key and the parts it was made from (stored with the entry, for people debugging a miss)."""
    parts = {
        "train": examples_digest(train),
        "eval": examples_digest(evals),
        "tokenizer": tokenizer_digest(tokenizer),
        "template": hashlib.sha256(str(getattr(tokenizer, "chat_template", None) or "").encode()).hexdigest(),
        "options": dict(sorted(options.items())),
        "code": _code_digest(),
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
    return key, parts


def data_cache_root() -> Path:
    """``$FTX_HOME/data``."""
    return ftx_home() / "data"


def _write_split(folder: Path, name: str, items: Sequence[Tokenized]) -> None:
    offsets = array("q", [0])
    ids = array("i")
    labels = array("i")
    for item in items:
        ids.extend(item.input_ids)
        labels.extend(item.labels)
        offsets.append(len(ids))
    for suffix, values in (("ids", ids), ("labels", labels), ("offsets", offsets)):
        with open(folder / f"{name}.{suffix}", "wb") as handle:
            values.tofile(handle)


def _read_array(path: Path, typecode: str) -> array:
    values = array(typecode)
    with open(path, "rb") as handle:
        values.frombytes(handle.read())
    return values


def _read_split(folder: Path, name: str, count: int) -> list[Tokenized]:
    """One split's examples; a file cut short or grown (a crash, a full disk, a copy) is a ValueError."""
    ids = _read_array(folder / f"{name}.ids", "i").tolist()
    labels = _read_array(folder / f"{name}.labels", "i").tolist()
    offsets = _read_array(folder / f"{name}.offsets", "q").tolist()
    if len(offsets) != count + 1 or offsets[0] != 0 or offsets[-1] != len(ids) or len(labels) != len(ids):
        raise ValueError(f"cache entry {folder} is damaged ({name} split sizes disagree)")
    if any(b < a for a, b in itertools.pairwise(offsets)):
        raise ValueError(f"cache entry {folder} is damaged ({name} offsets out of order)")
    return [Tokenized(ids[a:b], labels[a:b]) for a, b in itertools.pairwise(offsets)]


def load_entry(folder: Path) -> TokenizeResult | None:
    """A stored entry, or ``None`` when it is missing or unreadable (then it is rebuilt)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != CACHE_FORMAT:
            return None
        sizes = manifest.get("sizes")
        if not isinstance(sizes, dict) or any((folder / n).stat().st_size != size for n, size in sizes.items()):
            return None  # a file cut short or grown since it was written: rebuilt
        train = _read_split(folder, "train", int(manifest["counts"]["train"]))
        evals = _read_split(folder, "eval", int(manifest["counts"]["eval"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return TokenizeResult(train, evals, dict(manifest["dropped"]), dict(manifest["first_bad"]),
                          manifest["key"], True, folder)


def store_entry(folder: Path, result: TokenizeResult, parts: dict[str, Any]) -> None:
    """Write an entry atomically: a temporary sibling folder renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_split(tmp, "train", result.train)
        _write_split(tmp, "eval", result.eval)
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        manifest = {
            "format": CACHE_FORMAT, "key": result.key, "parts": parts, "created": time.time(),
            "counts": {"train": len(result.train), "eval": len(result.eval)}, "sizes": sizes,
            "dropped": result.dropped, "first_bad": result.first_bad,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a cache that cannot be written is only slower


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
) -> TokenizeResult:
    """Tokenise train and eval examples through the cache (see the module docstring for the key)."""
    options = {"max_length": max_length, "overlength": overlength, "train_on": train_on, "strict": strict}
    key, parts = cache_key(tokenizer, train, evals, options) if use_cache else ("", {})
    folder = data_cache_root() / key if use_cache else None
    if folder is not None and folder.is_dir():
        found = load_entry(folder)
        if found is not None:
            return found
    dropped: dict[str, int] = {}
    first_bad: dict[str, str] = {}
    train_tok = tokenize_all(tokenizer, train, max_length, overlength, train_on, dropped, first_bad=first_bad, strict=strict)
    eval_tok = tokenize_all(tokenizer, evals, max_length, overlength, train_on, dropped, first_bad=first_bad, strict=strict)
    result = TokenizeResult(train_tok, eval_tok, dropped, first_bad, key, False, folder)
    if folder is not None:
        store_entry(folder, result, parts)
    return result


def cut_answers(items: Sequence[Tokenized], max_length: int, tokenizer: Any) -> int:
    """How many examples were cut inside a trained answer: full length, ending on a trained token that is not the
    end of a turn (an answer that ends exactly at the limit keeps its end-of-turn token and is not counted)."""
    from .tokenize import IGNORE_INDEX

    stops = {i for i in (getattr(tokenizer, "eos_token_id", None),) if isinstance(i, int)}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        found = tokenizer.convert_tokens_to_ids(token) if hasattr(tokenizer, "convert_tokens_to_ids") else None
        if isinstance(found, int) and found != getattr(tokenizer, "unk_token_id", None):
            stops.add(found)
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
