"""Verified checkpoints: a manifest of sizes and hashes marks a checkpoint complete.

A checkpoint is written by the trainer, then its manifest is written atomically. A checkpoint
without a manifest (killed while writing) or whose files no longer match it (truncated, edited)
is skipped on resume in favour of the previous complete one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from .rundir import write_json

MANIFEST = "ftx-checkpoint.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")
_WHOLE_HASH_LIMIT = 64 * 2**20
_CHUNK = 4 * 2**20


def _digest(path: Path) -> str:
    """sha256 of a file; for large files, of its size, head and tail (sizes catch truncation anyway)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size <= _WHOLE_HASH_LIMIT:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(handle.read(_CHUNK))
            handle.seek(size - _CHUNK)
            h.update(handle.read(_CHUNK))
    return h.hexdigest()


def write_manifest(folder: Path, step: int) -> None:
    """Record every file of a finished checkpoint; written last, so its presence means complete."""
    files = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _digest(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    write_json(folder / MANIFEST, {"step": step, "files": files})


def verify(folder: Path) -> str | None:
    """``None`` for a complete checkpoint, else why it cannot be used."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return "no manifest (it was being written when the run stopped)"
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError):
        return "its manifest is unreadable"
    for name, meta in recorded.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} is {path.stat().st_size} bytes, {meta['size']} expected (truncated)"
        if _digest(path) != meta["sha256"]:
            return f"{name} does not match its recorded hash"
    return None


def checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every checkpoint folder, newest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return sorted(found, reverse=True)


def latest_complete(checkpoint_dir: Path, echo: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint that verifies; every skipped one is reported with its reason."""
    for step, folder in checkpoints(checkpoint_dir):
        problem = verify(folder)
        if problem is None:
            return folder
        echo(f"skipping checkpoint at step {step} ({folder}): {problem}")
    return None
