"""Content digests of examples, and where the data caches live: shared by preparation and the token cache."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from ftx_hookspecs import Example

from ..paths import ftx_home


def example_digest(example: Example) -> bytes:
    """16 bytes that change with the example's content (kind, fields and tools, not where it came from)."""
    # repr of plain str/list/dict values is exact and much faster than JSON; a different key
    # order from a changed converter only costs a rebuild
    fields = [(k, v) for k, v in vars(example).items() if k != "meta"]
    if example.meta.get("tools"):  # the tool list is rendered into the prompt
        fields.append(("tools", example.meta["tools"]))
    text = repr((type(example).__name__, fields)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).digest()


def examples_digest(examples: Iterable[Example]) -> str:
    """A hash of the examples' content, in order: SHA-256 over their :func:`example_digest` values.

    A sequence that carries its digest (a stored split, :class:`~ftx.data.store.StoredExamples`) is not read."""
    carried = getattr(examples, "digest", None)
    if isinstance(carried, str):
        return carried
    h = hashlib.sha256()
    for example in examples:
        h.update(example_digest(example))
    return h.hexdigest()


def data_cache_root() -> Path:
    """``$FTX_HOME/data``."""
    return ftx_home() / "data"
