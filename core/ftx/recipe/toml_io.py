"""Reading and writing TOML: stdlib ``tomllib`` (``tomli`` before Python 3.11) and ``tomli_w``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import RecipeError

TOMLDecodeError = tomllib.TOMLDecodeError


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a :class:`RecipeError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM (Windows editors) is dropped
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except IsADirectoryError:
        raise RecipeError(f"{path} is a folder; give the recipe's .toml file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise RecipeError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte offset {exc.start}, "
                          f"line {line}); save the recipe as UTF-8") from None
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{path}: tables or arrays nested too deeply") from None


def loads(text: str) -> dict[str, Any]:
    """Parse TOML text."""
    return tomllib.loads(text)


def dumps(data: dict[str, Any]) -> str:
    """Write TOML text; ``None`` values are dropped since TOML has no null."""
    import tomli_w

    return tomli_w.dumps(_drop_none(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value
