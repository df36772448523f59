"""B3: wall time of the light commands beside `python -c pass`; torch must never be imported.

    python bench/cli.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import REPO, merge_results, print_table

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "ftx --help": [sys.executable, "-m", "ftx.cli", "--help"],
    "ftx plugins": [sys.executable, "-m", "ftx.cli", "plugins"],
    "ftx validate": [sys.executable, "-m", "ftx.cli", "validate", "recipes/quickstart.toml"],
}
GOAL_SECONDS = 0.5


def wall(command: list[str], repeats: int = 7) -> float:
    """Best wall time of several runs (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, capture_output=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        best = min(best, time.perf_counter() - started)
    return best


def main() -> dict[str, float]:
    figures = {name: round(wall(cmd), 3) for name, cmd in COMMANDS.items()}
    base = figures["python -c pass"]
    rows = [(name, f"{secs:.3f}s ({secs / base:.1f}x python)", "-" if name.startswith("python") else f"< {GOAL_SECONDS}s",
             "" if name.startswith("python") else ("yes" if secs < GOAL_SECONDS else "NO")) for name, secs in figures.items()]
    print_table("B3: start-up of the light commands (best of 7)", rows)
    merge_results("B3_cli", {**figures, "goal_seconds": GOAL_SECONDS})
    return figures


if __name__ == "__main__":
    main()
