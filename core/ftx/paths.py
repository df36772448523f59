"""Where ftx keeps its caches: ``$FTX_HOME``, else ``$XDG_CACHE_HOME/ftx``, else ``~/.cache/ftx``."""

from __future__ import annotations

import os
from pathlib import Path


def ftx_home() -> Path:
    """The cache root (built-in models, prepared data); created on first use."""
    env = os.environ.get("FTX_HOME")
    if env:
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ftx"
    root.mkdir(parents=True, exist_ok=True)
    return root
