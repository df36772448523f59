"""The run folder: refused when non-empty unless resuming or overwriting, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import RecipeError

MARKER = "recipe.lock.toml"
"""A folder holding this file is an ftx run folder; only those may be overwritten."""


def prepare_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create or reuse the run folder; never wipe a folder that is not an ftx run folder."""
    path = Path(path).expanduser()
    if path.is_symlink():
        raise RecipeError(f"output folder {path} is a symbolic link; give a real folder")
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise RecipeError(f"output {path} exists and is not a folder")
    if path.exists() and any(path.iterdir()):
        if resume:
            return path
        if not overwrite:
            raise RecipeError(
                f"output folder {path} is not empty; pass --resume to continue that run, "
                "--overwrite to replace it, or --output to choose another folder"
            )
        if not (path / MARKER).exists():
            raise RecipeError(f"refusing to overwrite {path}: it is not an ftx run folder (no {MARKER})")
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary file and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented for people."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
