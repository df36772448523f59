"""ftx-liger is GPU-only and not part of the CPU install: its tests import it from the source tree."""

from __future__ import annotations

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
