"""Tokenise examples in batches into NumPy arrays, with the same ids and labels as the example-by-example path.

:func:`ftx.data.tokenize.tokenize_chat` cuts the rendered text at the trained spans and tokenises each
piece on its own. Here the text and spans of a whole chunk of examples come from
:mod:`ftx.data.layout` (the chat template worked out once per shape of conversation, the exact
renderings where it cannot be), all pieces of the chunk go through the fast tokenizer in one batch
call, and the ids land in flat ``int32`` arrays: no Python list per example survives a chunk. The
over-length policy and the drops are applied example by example in order, as
:func:`tokenize_all` documents, so errors and first-of-each-reason messages are
the same.

Batch encoding calls the Rust tokenizer directly with the settings ``tokenizer(text,
add_special_tokens=False)`` uses (no padding, no truncation, its ``split_special_tokens``); the first
pieces of every preparation are checked against that call, and a tokenizer that disagrees (or a slow
one) is called through transformers instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from ftx_hookspecs import ChatExample, Example, TextExample

from ..errors import DataError
from .layout import layout_for
from .tokenize import IGNORE_INDEX, Tokenized, assistant_spans, describe_source, drop_oldest_turns

CHUNK = 2048
"""Examples tokenised per batch: large enough to amortise the call, small enough to keep memory flat."""

PARALLEL_MIN = 256
"""Texts in a batch from which the Rust tokenizer may use all cores (``TOKENIZERS_PARALLELISM`` allowing)."""


@dataclass
class Encoded:
    """One chunk of tokenised examples: flat ids and labels, and the length of each kept example."""

    ids: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray

    def items(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each kept example's ids and labels (views into the chunk)."""
        at = 0
        for n in self.lengths.tolist():
            yield self.ids[at : at + n], self.labels[at : at + n]
            at += n


def _fast_backend(tokenizer: Any) -> Any:
    """The Rust tokenizer behind a transformers fast tokenizer whose encoding path is the stock one, else ``None``."""
    backend = getattr(tokenizer, "_tokenizer", None)
    try:
        import tokenizers
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - transformers without the backend class
        return None
    if not isinstance(backend, tokenizers.Tokenizer) or not isinstance(tokenizer, TokenizersBackend):
        return None
    if type(tokenizer)._encode_plus is not TokenizersBackend._encode_plus:
        return None
    return backend


@contextmanager
def _parallel(enabled: bool) -> Iterator[None]:
    """Let the Rust tokenizer use every core for one batch call, even where ftx turned it off for forked workers.

    The variable is set back afterwards; with it set, a later fork neither warns nor uses the thread pool."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    if enabled and old is not None and old.lower() in ("0", "false", "off", "no"):
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        try:
            yield
        finally:
            os.environ["TOKENIZERS_PARALLELISM"] = old
    else:
        yield


class PieceEncoder:
    """``tokenizer(text, add_special_tokens=False)["input_ids"]`` for many texts at once."""

    def __init__(self, tokenizer: Any, parallel: bool = True) -> None:
        self.tokenizer = tokenizer
        self.backend = _fast_backend(tokenizer)
        self.parallel = parallel
        self.checked = False

    def _reference(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def __call__(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self.backend is None:
            return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

        tok = self.tokenizer
        tok.set_truncation_and_padding(PaddingStrategy.DO_NOT_PAD, TruncationStrategy.DO_NOT_TRUNCATE, None, 0, None, None)
        split = bool(getattr(tok, "split_special_tokens", False))
        if self.backend.encode_special_tokens != split:
            self.backend.encode_special_tokens = split
        with _parallel(self.parallel and len(texts) >= PARALLEL_MIN):
            out = [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]
        if not self.checked:
            self.checked = True
            sample = list(range(min(8, len(texts))))
            if self._reference([texts[i] for i in sample]) != [out[i] for i in sample]:
                self.backend = None  # this tokenizer post-processes in Python: go through it
                return self(texts)
        return out


class ChunkEncoder:
    """Tokenise examples chunk by chunk with the over-length policy of :func:`tokenize_all`."""

    def __init__(
        self, tokenizer: Any, max_length: int, overlength: str = "truncate", train_on: str = "assistant",
        dropped: dict[str, int] | None = None, first_bad: dict[str, str] | None = None, strict: bool = False,
        parallel: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.overlength = overlength
        self.train_on = train_on
        self.dropped = dropped
        self.first_bad = first_bad
        self.strict = strict
        self.pieces = PieceEncoder(tokenizer, parallel)
        self.layout = layout_for(tokenizer)
        self.eos = getattr(tokenizer, "eos_token_id", None)

    def _drop(self, reason: str, where: str, detail: str) -> None:
        if self.strict:
            raise DataError(f"{where}: {detail} (data.strict = true stops at the first bad row)")
        if self.dropped is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self.first_bad is not None:
            self.first_bad.setdefault(reason, f"{where}: {detail}")

    def _plan(self, example: Example, texts: list[str], flags: list[bool], fixed: dict[int, list[int]]) -> int:
        """Append the example's pieces (text to encode, or fixed ids) and return how many there are."""
        if isinstance(example, ChatExample):
            found = self.layout.spans(example, self.train_on)
            text, spans = found if found is not None else assistant_spans(
                self.tokenizer, example.messages, self.train_on, example.meta.get("tools"))
            count = 0
            at = 0
            for start, end in [*spans, (len(text), len(text))]:
                for a, b, trained in ((at, start, False), (start, end, True)):
                    if b > a:
                        texts.append(text[a:b])
                        flags.append(trained)
                        count += 1
                at = end
            return count
        if isinstance(example, TextExample):
            texts.append(example.text)
            flags.append(True)
            if self.eos is None:
                return 1
            fixed[len(texts)] = [self.eos]
            texts.append("")
            flags.append(True)
            return 2
        raise DataError(f"cannot tokenise {type(example).__name__} for language-model training")

    def encode(self, examples: Sequence[Example], first_index: int = 0) -> Encoded:
        """Tokenise one chunk; ``first_index`` is the position of its first example (errors name it)."""
        texts: list[str] = []
        flags: list[bool] = []
        fixed: dict[int, list[int]] = {}
        counts = [self._plan(example, texts, flags, fixed) for example in examples]
        encode_at = [i for i in range(len(texts)) if i not in fixed]
        encoded: list[list[int]] = self.pieces([texts[i] for i in encode_at])
        if fixed:  # the end-of-sequence ids of text examples go between the encoded pieces
            lists: list[list[int]] = [fixed.get(i, []) for i in range(len(texts))]
            for i, piece_ids in zip(encode_at, encoded):
                lists[i] = piece_ids
            encoded = lists
        piece_len = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        total = int(piece_len.sum())
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=total)
        mask = np.repeat(np.asarray(flags, dtype=bool), piece_len)
        labels = np.where(mask, ids, np.int32(IGNORE_INDEX)).astype(np.int32, copy=False)
        piece_end = np.concatenate(([0], np.cumsum(piece_len)))
        bounds = np.concatenate(([0], np.cumsum(np.asarray(counts, dtype=np.int64))))
        starts, ends = piece_end[bounds[:-1]], piece_end[bounds[1:]]
        lengths = ends - starts
        trained_cum = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
        trained = trained_cum[ends] - trained_cum[starts]
        problems = np.flatnonzero((lengths > self.max_length) | (trained == 0)).tolist()
        if not problems:
            return Encoded(ids, labels, lengths)
        keep = np.ones(len(examples), dtype=bool)
        out_lengths = lengths.copy()
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        cursor = 0
        for i in problems:
            s, e = int(starts[i]), int(ends[i])
            parts.append((ids[cursor:s], labels[cursor:s]))
            cursor = e
            replaced = self._apply_policy(examples[i], first_index + i, ids[s:e], labels[s:e])
            if replaced is None:
                keep[i] = False
                continue
            parts.append(replaced)
            out_lengths[i] = len(replaced[0])
        parts.append((ids[cursor:], labels[cursor:]))
        return Encoded(np.concatenate([p[0] for p in parts]).astype(np.int32, copy=False),
                       np.concatenate([p[1] for p in parts]).astype(np.int32, copy=False), out_lengths[keep])

    def _apply_policy(
        self, example: Example, index: int, ids: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """:func:`tokenize_all`'s handling of one over-long or untrained example; ``None``: dropped."""
        where = describe_source(example.meta.get("source"), index)
        max_length = self.max_length
        if len(ids) > max_length:
            detail = f"{len(ids)} tokens, over data.max_length = {max_length}"
            if self.overlength == "error":
                raise DataError(f"{where}: {detail} (set data.overlength = 'truncate' or 'drop', or raise max_length)")
            if self.overlength == "drop":
                self._drop("over-length", where, detail)
                return None
            shorter = None
            if self.overlength == "drop-oldest-turns" and isinstance(example, ChatExample):
                shorter = drop_oldest_turns(self.tokenizer, example, max_length, self.train_on)
            if shorter is not None:
                ids = np.asarray(shorter.input_ids, dtype=np.int32)
                labels = np.asarray(shorter.labels, dtype=np.int32)
            else:
                ids, labels = ids[:max_length], labels[:max_length]
        if not np.any(labels != IGNORE_INDEX):
            self._drop("nothing to train", where, "no trained token left (truncated away or no assistant turn)")
            return None
        return ids, labels

    def chunks(self, examples: Iterable[Example], size: int | None = None) -> Iterator[Encoded]:
        """Tokenise ``examples`` (any iterable: a lazy store is read a chunk at a time), :data:`CHUNK` at a time."""
        size = size or CHUNK
        index = 0
        iterator = iter(examples)
        while True:
            batch = list(itertools.islice(iterator, size))
            if not batch:
                return
            yield self.encode(batch, index)
            index += len(batch)


def tokenize_lists(
    tokenizer: Any, examples: Iterable[Example], max_length: int, overlength: str = "truncate",
    train_on: str = "assistant", dropped: dict[str, int] | None = None, *,
    first_bad: dict[str, str] | None = None, strict: bool = False,
) -> list[Tokenized]:
    """:func:`tokenize_all` through the batched path, as lists of ints."""
    encoder = ChunkEncoder(tokenizer, max_length, overlength, train_on, dropped, first_bad, strict)
    return [Tokenized(i.tolist(), l.tolist()) for chunk in encoder.chunks(examples) for i, l in chunk.items()]


def tokenize_all(
    tokenizer: Any, examples: Sequence[Example], max_length: int, overlength: str = "truncate",
    train_on: str = "assistant", dropped: dict[str, int] | None = None, *,
    first_bad: dict[str, str] | None = None, strict: bool = False,
) -> list[Tokenized]:
    """Tokenise examples and apply the over-length policy; examples left with nothing to train are dropped.

    ``overlength``: ``truncate`` cuts at ``max_length``, ``drop`` skips the example (counted as
    ``over-length`` in ``dropped``), ``error`` stops naming the example's file and row,
    ``drop-oldest-turns`` removes a conversation's oldest exchanges until it fits (its last, trained
    turns survive) and truncates what still does not fit. With
    ``strict`` every drop is an error naming file and row, as for bad rows.

    Examples are tokenised in batches (this module); the result equals
    :func:`~ftx.data.tokenize.tokenize_all_exact`, the example-by-example reference.
    """
    return tokenize_lists(tokenizer, examples, max_length, overlength, train_on, dropped,
                          first_bad=first_bad, strict=strict)
