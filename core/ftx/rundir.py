"""The run folder: refused when non-empty unless resuming or overwriting an ftx run, written atomically."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputRefused, RunError
from .layout import LOCK

MARKER = LOCK
"""A folder holding this file (written by ftx, with its ``[ftx]`` or ``[pipeline]`` table) is an ftx run folder."""

_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space, or choose --output on another disk",
    errno.EDQUOT: "disk quota exceeded: free some space, or choose --output on another disk",
    errno.EROFS: "the file system is read-only: choose --output on a writable disk",
    errno.EACCES: "permission denied: choose --output in a folder you can write to",
    errno.EPERM: "operation not permitted: choose --output in a folder you can write to",
}

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: the process's umask, for files written through a temporary file

ENV_ERRNOS = frozenset(_ADVICE)
"""Errors the machine causes (full, read-only or forbidden disk), reported in one line without a traceback."""


def os_error_message(exc: OSError, doing: str = "writing") -> str:
    """One line for an environment error: what failed, on which path, and what to do."""
    where = exc.filename if exc.filename is not None else "the run folder"
    advice = _ADVICE.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{doing} {where} failed: {advice}"


def run_folder_problem(path: Path) -> str | None:
    """Why a non-empty folder is not an ftx run folder, or ``None`` when it is one (a lock ftx wrote)."""
    lock = path / MARKER
    if not lock.is_file():
        return f"it is not an ftx run folder (no {MARKER})"
    from .recipe.toml_io import loads

    try:
        data = loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        return f"its {MARKER} is damaged ({str(exc).splitlines()[0]})"
    if not isinstance(data.get("ftx"), dict) and not isinstance(data.get("pipeline"), dict):
        return f"its {MARKER} was not written by ftx (no [ftx] table)"
    return None


def check_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """The resolved run folder after checking it may be used as asked; touches nothing on disk.

    A non-empty folder needs ``resume`` or ``overwrite``, and either one needs an ftx run folder:
    files ftx did not write are never trained into or deleted.
    """
    path = Path(path).expanduser()
    if path.is_symlink():
        raise OutputRefused(f"output folder {path} is a symbolic link; give a real folder")
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise OutputRefused(f"output {path} exists and is not a folder; choose another --output")
    try:
        non_empty = path.exists() and any(path.iterdir())
    except OSError as exc:
        raise RunError(os_error_message(exc, "reading")) from None
    _check_writable(path)
    if not non_empty:
        return path
    if not (resume or overwrite):
        raise OutputRefused(
            f"output folder {path} is not empty; pass --resume to continue that run, "
            "--overwrite to replace it, or --output to choose another folder"
        )
    problem = run_folder_problem(path)
    if problem is not None:
        action = "resume in" if resume else "overwrite"
        raise OutputRefused(f"refusing to {action} {path}: {problem}; its files were left untouched. "
                          "Choose another --output")
    return path


def _check_writable(path: Path) -> None:
    """Refuse a read-only file system before any work is done (``mkdir`` would say so only after data preparation)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): make_run_dir finds out
        return
    if read_only:
        raise RunError(f"cannot use the output folder: {path} is on a read-only file system; "
                       "choose --output on a writable disk")


def clear_run_dir(path: Path) -> None:
    """Delete an ftx run folder's contents (checked again: only a folder ftx wrote is cleared)."""
    if not path.is_dir() or not any(path.iterdir()):
        return
    problem = run_folder_problem(path)
    if problem is not None:
        raise OutputRefused(f"refusing to overwrite {path}: {problem}; its files were left untouched")
    (path / MARKER).unlink()  # first: a folder cleared halfway is no longer taken for a run
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def make_run_dir(path: Path) -> Path:
    """Create the run folder; a read-only or full disk is a one-line :class:`RunError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".ftx-write-test.", delete=True)  # noqa: SIM115
        probe.close()
    except OSError as exc:
        raise RunError(f"cannot use the output folder: {os_error_message(exc, 'writing')}") from None
    return path


def prepare_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Check, clear (``overwrite``) and create the run folder; never wipe a folder that is not an ftx run folder."""
    path = check_run_dir(path, overwrite=overwrite, resume=resume)
    if overwrite:
        try:
            clear_run_dir(path)
        except OSError as exc:
            raise RunError(os_error_message(exc, "clearing")) from None
    return make_run_dir(path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary file and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes the file private (0600); a run's files read like any other file
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error_file(path: Path, text: str) -> bool:
    """Best effort for the error handler: write ``error.txt``, never raise; ``False`` when it could not."""
    try:
        write_text_atomic(path, text)
        return True
    except Exception:  # noqa: BLE001 - a full or read-only disk must not hide the error being reported
        return False


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
