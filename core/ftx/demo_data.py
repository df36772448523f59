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


CLASSES = {"early": "abcdefgh", "middle": "ijklmnop", "late": "qrstuvwxyz"}
"""The classification demo's labels: where in the alphabet a sequence's first letter falls."""


def classification_rows(n: int, seed: int = 0, low: int = 3, high: int = 7) -> list[dict[str, str]]:
    """Classification rows (text, label): three classes by the first letter of a letter sequence."""
    rng = random.Random(f"classify-{seed}")
    rows = []
    for _ in range(n):
        letters = _word(rng, low, high)
        label = next(name for name, group in CLASSES.items() if letters[0] in group)
        rows.append({"text": " ".join(letters), "label": label})
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


# -- preference pairs: a correct answer (chosen) against a plausibly wrong one (rejected) ------------

PREFERENCE_TASKS = ("reverse", "sort", "copy", "upper", "double")
"""Tasks whose wrong answers are easy to generate and still look like answers."""


MISTAKES = ("wrong order", "dropped letter", "extra letter", "wrong letter", "not capitalised")
"""Kinds of wrong answers :func:`corrupt` makes ("not capitalised" applies to the ``upper`` task only)."""


def corrupt(
    task: str, letters: list[str], rng: random.Random, mistakes: tuple[str, ...] = MISTAKES
) -> tuple[list[str], str]:
    """A plausibly wrong answer to ``task`` on ``letters`` and the kind of mistake made.

    Mistakes: the wrong order (the input echoed, reversed or shuffled), a dropped letter, an extra
    letter, a wrong letter, or (``upper``) not capitalised; each differs from the correct answer.
    """
    _, solve = TASKS[task]
    right = solve(letters)
    kinds = [m for m in mistakes if m != "not capitalised" or task == "upper"] or ["wrong letter"]
    for _ in range(20):
        kind = rng.choice(kinds)
        if kind == "wrong order":
            if task == "reverse":
                wrong = list(letters)
            elif task == "copy":
                wrong = list(reversed(letters))
            else:
                wrong = list(right)
                rng.shuffle(wrong)
        elif kind == "dropped letter":
            wrong = list(right)
            del wrong[rng.randrange(len(wrong))]
        elif kind == "extra letter":
            wrong = list(right)
            extra = rng.choice(LETTERS)
            wrong.insert(rng.randrange(len(wrong) + 1), extra.upper() if task == "upper" else extra)
        elif kind == "wrong letter":
            wrong = list(right)
            i = rng.randrange(len(wrong))
            new = rng.choice([c for c in LETTERS if c != wrong[i].lower()])
            wrong[i] = new.upper() if task == "upper" else new
        else:
            wrong = [x.lower() for x in right]
        if wrong != right and wrong:
            return wrong, kind
    raise AssertionError("no corruption found")  # pragma: no cover - 20 tries always find one


def preference_rows(
    n: int, seed: int = 0, tasks: tuple[str, ...] = PREFERENCE_TASKS, low: int = 3, high: int = 6,
    mistakes: tuple[str, ...] = MISTAKES,
) -> list[dict[str, str]]:
    """Preference rows ``{prompt, chosen, rejected, mistake}``: the correct answer against a wrong one.

    The prompt reads like the alpaca rows of :func:`task_rows` (instruction, newline, letters), so
    a model fine-tuned on those answers the same prompts that its reward model and DPO see.
    """
    rng = random.Random(f"preference-{seed}")
    rows = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        instruction, solve = TASKS[task]
        letters = _word(rng, low, high)
        wrong, kind = corrupt(task, letters, rng, mistakes)
        rows.append({
            "prompt": f"{instruction}\n{' '.join(letters)}",
            "chosen": " ".join(solve(letters)),
            "rejected": " ".join(wrong),
            "mistake": kind,
        })
    return rows


def prompt_rows(
    n: int, seed: int = 0, tasks: tuple[str, ...] = PREFERENCE_TASKS, low: int = 3, high: int = 6
) -> list[dict[str, str]]:
    """Alpaca rows (prompt + reference answer) over several tasks: SFT data and RL prompts with references."""
    rng = random.Random(f"prompts-{seed}")
    rows = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        instruction, solve = TASKS[task]
        letters = _word(rng, low, high)
        rows.append({"instruction": instruction, "input": " ".join(letters), "output": " ".join(solve(letters))})
    return rows


def write_jsonl(rows: list[dict[str, str]], path: Path) -> Path:
    """Write rows as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def write_preference_data(root: Path) -> None:
    """The preference-tuning demo files: pairs for reward models and DPO, prompts for SFT and RL."""
    write_jsonl(preference_rows(1200, seed=0), root / "preference.jsonl")
    write_jsonl(prompt_rows(1200, seed=0), root / "tasks.jsonl")


def main() -> None:  # pragma: no cover - used to regenerate recipes/data
    """Regenerate the data files shipped in ``recipes/data``."""
    root = Path(__file__).resolve().parents[2] / "recipes" / "data"
    write_jsonl(reverse_rows(2000, seed=0), root / "reverse.jsonl")
    write_preference_data(root)
    write_jsonl(classification_rows(2000, seed=0), root / "classify.jsonl")
    print(f"wrote {root}")


if __name__ == "__main__":  # pragma: no cover
    main()
