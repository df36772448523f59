"""Sequences kept on disk and read one item at a time, so preparation's memory does not grow with the data.

* :class:`ExampleWriter` / :class:`StoredExamples`: converted examples, pickled one after another in
  ``examples.pkl`` with their byte offsets in ``examples.offsets`` (``int64``); a view selects some of
  them (the train or eval split) by an index array.
* :class:`TokenizedSplit`: tokenised examples as flat ``int32`` ids and labels with ``int64``
  offsets (the layout of the preparation cache), read back as NumPy arrays.

Items are read with ``pread`` rather than through a memory map: a map would count every page a
training epoch touches in the process's resident memory (and in ftx's peak-memory figure), while a
read copies only the few hundred bytes of one example. The files stay open for the life of the
sequence, so a concurrent rebuild of the same cache entry (renamed over it) does not disturb it.
"""

from __future__ import annotations

import os
import pickle
from array import array
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
from ftx_hookspecs import Example

from .tokenize import IGNORE_INDEX, Tokenized

READ_BLOCK = 1 << 18
"""Bytes of neighbouring examples read at once when iterating."""


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _pread(fd: int, size: int, offset: int) -> bytes:
    out = os.pread(fd, size, offset)
    while len(out) < size:  # a short read (large requests on some systems)
        more = os.pread(fd, size - len(out), offset + len(out))
        if not more:
            raise ValueError("file shorter than its offsets say")
        out += more
    return out


class ExampleWriter:
    """Append examples to ``<folder>/examples.pkl``; :meth:`close` writes the offsets."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.handle = open(folder / "examples.pkl", "wb")  # noqa: SIM115 - closed by close()
        self.offsets = array("q", [0])
        self.closed = False

    def add(self, example: Example) -> None:
        blob = pickle.dumps(example, protocol=pickle.HIGHEST_PROTOCOL)
        self.handle.write(blob)
        self.offsets.append(self.offsets[-1] + len(blob))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handle.close()
            with open(self.folder / "examples.offsets", "wb") as handle:
                self.offsets.tofile(handle)

    def __len__(self) -> int:
        return len(self.offsets) - 1


class StoredExamples(Sequence[Example]):
    """Examples read from an :class:`ExampleWriter`'s folder, optionally a selection of them by index.

    ``digest`` is the content digest of the selected examples in order (see
    :func:`ftx.data.cache.examples_digest`), carried so a cache key needs no pass over them.
    """

    def __init__(self, folder: Path, indices: np.ndarray | None = None, digest: str | None = None,
                 owner: Any = None) -> None:
        self.folder = folder
        self.owner = owner  # keeps a temporary folder alive while a view of it is
        offsets = np.fromfile(folder / "examples.offsets", dtype=np.int64)
        if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != (folder / "examples.pkl").stat().st_size:
            raise ValueError(f"stored examples in {folder} are damaged (offsets disagree with the data)")
        self.offsets = offsets
        self.indices = np.arange(len(offsets) - 1, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        self.digest = digest
        self.fd = os.open(folder / "examples.pkl", os.O_RDONLY)
        self._finalizer = weakref.finalize(self, _close, [self.fd])

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "indices": self.indices, "digest": self.digest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["indices"], state["digest"])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, position: int) -> Example:
        a, b = int(self.offsets[position]), int(self.offsets[position + 1])
        return pickle.loads(_pread(self.fd, b - a, a))

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...
    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            return [self._load(int(i)) for i in self.indices[index]]
        return self._load(int(self.indices[index]))

    def __iter__(self) -> Iterator[Example]:
        indices, offsets, n, i = self.indices, self.offsets, len(self.indices), 0
        while i < n:  # runs of neighbouring examples are read a few MiB at a time
            first = int(indices[i])
            start = int(offsets[first])
            j = i + 1
            while j < n and indices[j] == indices[j - 1] + 1 and offsets[indices[j] + 1] - start <= READ_BLOCK:
                j += 1
            last = int(indices[j - 1])
            data = memoryview(_pread(self.fd, int(offsets[last + 1]) - start, start))
            for k in range(first, last + 1):
                yield pickle.loads(data[int(offsets[k]) - start : int(offsets[k + 1]) - start])
            i = j

    def __add__(self, other: Any) -> list[Example]:
        return [*self, *other]

    def __radd__(self, other: Any) -> list[Example]:
        return [*other, *self]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredExamples({len(self)} examples in {self.folder})"


class TokenizedSplit(Sequence[Tokenized]):
    """Tokenised examples from flat arrays: ``<name>.ids`` and ``<name>.labels`` (``int32``), ``<name>.offsets``.

    Indexing gives a :class:`Tokenized` with lists (as every consumer expects); :meth:`arrays` gives
    the NumPy arrays and :meth:`features` a lazy dataset of them for ``Trainer``, so training reads
    one batch of ids at a time. ``tokens``, ``trained_tokens`` and ``cut`` (examples cut inside an
    answer) come from the cache manifest, so summaries need no pass over the tokens.
    """

    def __init__(self, folder: Path | None, name: str, offsets: np.ndarray,
                 arrays: tuple[np.ndarray, np.ndarray] | None = None, stats: dict[str, int] | None = None) -> None:
        self.folder = folder
        self.name = name
        self.offsets = offsets
        self.stats = dict(stats or {})
        self._arrays = arrays
        self.fds: list[int] = []
        if arrays is None:
            if folder is None:
                raise ValueError("a TokenizedSplit needs its folder or its arrays")
            self.fds = [os.open(folder / f"{name}.ids", os.O_RDONLY), os.open(folder / f"{name}.labels", os.O_RDONLY)]
            weakref.finalize(self, _close, self.fds)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "name": self.name, "offsets": self.offsets, "arrays": self._arrays,
                "stats": self.stats}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["name"], state["offsets"], state["arrays"], state["stats"])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One example's ids and labels as ``int32`` arrays."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        if self._arrays is not None:
            return self._arrays[0][a:b], self._arrays[1][a:b]
        size, at = 4 * (b - a), 4 * a
        ids = np.frombuffer(bytearray(_pread(self.fds[0], size, at)), dtype=np.int32)  # writable, as torch prefers
        labels = np.frombuffer(bytearray(_pread(self.fds[1], size, at)), dtype=np.int32)
        return ids, labels

    @overload
    def __getitem__(self, index: int) -> Tokenized: ...
    @overload
    def __getitem__(self, index: slice) -> list[Tokenized]: ...
    def __getitem__(self, index: int | slice) -> Tokenized | list[Tokenized]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        ids, labels = self.arrays(index)
        return Tokenized(ids.tolist(), labels.tolist())

    def __iter__(self) -> Iterator[Tokenized]:
        for i in range(len(self)):
            yield self[i]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example."""
        return np.diff(self.offsets)

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def trained_tokens(self) -> int:
        """Tokens that take loss, over all examples."""
        if "trained" not in self.stats:
            self.stats["trained"] = sum(int(np.count_nonzero(self.arrays(i)[1] != IGNORE_INDEX)) for i in range(len(self)))
        return int(self.stats["trained"])

    def features(self) -> Features:
        """A lazy ``Trainer`` dataset: ``{"input_ids", "labels"}`` as arrays, read when a batch asks."""
        return Features(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TokenizedSplit({len(self)} examples, {self.tokens} tokens, {self.folder or 'in memory'})"


class Features(Sequence[dict[str, np.ndarray]]):
    """``Trainer``'s view of a :class:`TokenizedSplit`: one ``{"input_ids", "labels"}`` dict per example, on demand."""

    def __init__(self, split: TokenizedSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        ids, labels = self.split.arrays(int(index))
        return {"input_ids": ids, "labels": labels}
