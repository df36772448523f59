"""Data the project generates: small string tasks with exact answers, for offline demos and tests.

Everything here is deterministic for a given seed, so recipes, tests and caches agree.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from pathlib import Path

LETTERS = string.ascii_lowercase


def _word(rng: random.Random, low: int, high: int) -> list[str]:
    return [rng.choice(LETTERS) for _ in range(rng.randint(low, high))]


def reverse_rows(n: int, seed: int = 0, low: int = 3, high: int = 7) -> list[dict[str, str]]:
    """Alpaca rows: reverse a sequence of space-separated letters (the quickstart task)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        letters = _word(rng, low, high)
        rows.append({
            "instruction": "Reverse the letters.",
            "input": " ".join(letters),
            "output": " ".join(reversed(letters)),
        })
    return rows


TASKS = {
    "copy": ("Copy the letters.", lambda xs: xs),
    "sort": ("Sort the letters.", lambda xs: sorted(xs)),
    "first": ("Say the first letter.", lambda xs: xs[:1]),
    "last": ("Say the last letter.", lambda xs: xs[-1:]),
    "upper": ("Write the letters in capitals.", lambda xs: [x.upper() for x in xs]),
    "double": ("Double each letter.", lambda xs: [x for x in xs for _ in range(2)]),
    "reverse": ("Reverse the letters.", lambda xs: list(reversed(xs))),
}


def task_rows(task: str, n: int, seed: int = 0, low: int = 3, high: int = 7) -> list[dict[str, str]]:
    """Alpaca rows for one of :data:`TASKS`."""
    instruction, solve = TASKS[task]
    rng = random.Random(f"{task}-{seed}")
    rows = []
    for _ in range(n):
        letters = _word(rng, low, high)
        rows.append({"instruction": instruction, "input": " ".join(letters), "output": " ".join(solve(letters))})
    return rows


def general_text(n: int, seed: int = 0) -> Iterator[str]:
    """Sentences of a small synthetic language: the 'general ability' text for pre-training and forgetting checks."""
    rng = random.Random(f"general-{seed}")
    subjects = ["the cat", "a dog", "my friend", "the teacher", "a bird", "the child", "our team", "the farmer"]
    verbs = ["sees", "likes", "finds", "helps", "follows", "calls", "paints", "counts"]
    objects = ["the ball", "a tree", "the river", "two apples", "the red house", "a small boat", "the old book"]
    tails = ["today", "in the morning", "near the lake", "after lunch", "every day", "at night", "again"]
    for _ in range(n):
        yield f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}."


def write_jsonl(rows: list[dict[str, str]], path: Path) -> Path:
    """Write rows as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def main() -> None:  # pragma: no cover - used to regenerate recipes/data
    """Regenerate the data files shipped in ``recipes/data``."""
    root = Path(__file__).resolve().parents[2] / "recipes" / "data"
    write_jsonl(reverse_rows(2000, seed=0), root / "reverse.jsonl")
    print(f"wrote {root}")


if __name__ == "__main__":  # pragma: no cover
    main()
