"""Data the project generates: small string tasks with exact answers, for offline demos and tests.

Everything here is deterministic for a given seed, so recipes, tests and caches agree.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# -- support-ticket routing: a real-model task (one label word per message) -------------------------

ROUTING_INSTRUCTION = (
    "Route the customer message to one team: billing, shipping, returns, technical, account or sales. "
    "Answer with the team name only."
)
"""The routing task's instruction (a recipe's ``[data] system`` prompt); the answer is one of :data:`ROUTING_TEAMS`."""

ROUTING_TEAMS: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for order {order}.",
        "Invoice {invoice} shows {amount} but the price was lower.",
        "Why did my monthly fee go up to {amount}?",
        "Please send a VAT receipt for order {order}.",
        "My card was declined although there is money on it.",
        "The discount code was not taken off my bill.",
        "I paid {amount} by bank transfer on {day} and it still says unpaid.",
    ),
    "shipping": (
        "My parcel {order} has not arrived yet.",
        "The tracking for {order} has not moved since {day}.",
        "Can you deliver to my office in {city} instead?",
        "The courier left the box at the wrong door.",
        "How long does delivery to {city} take?",
        "The driver said the address in {city} does not exist.",
        "Only one of the two boxes of order {order} came.",
    ),
    "returns": (
        "The {product} I received is broken and I want to send it back.",
        "How do I return the {product}?",
        "I ordered the wrong size of {product} and need to exchange it.",
        "The return label for order {order} will not print.",
        "I sent the {product} back on {day}; when do I get my money?",
        "Can I still return a {product} bought {weeks} weeks ago?",
    ),
    "technical": (
        "The {product} app crashes when I open it.",
        "My {product} will not connect to the wifi.",
        "The update failed and my {product} shows error E{code}.",
        "The screen of my {product} stays black after charging.",
        "Bluetooth pairing with the {product} keeps dropping.",
        "The {product} gets very hot after {minutes} minutes.",
    ),
    "account": (
        "I forgot my password and the reset email never comes.",
        "Please change the email on my profile to {email}.",
        "How do I delete my account and my data?",
        "I cannot log in since {day}.",
        "Someone else logged into my profile from {city}.",
        "Please merge my two logins into one.",
    ),
    "sales": (
        "Do you give a discount for {count} {product}s for our school?",
        "Will the {product} be back in stock soon?",
        "Can I get a price quote for {count} units of the {product}?",
        "What is the difference between the {product} and the {product} Pro?",
        "Do you sell the {product} in other colours?",
        "Is there a bulk price for companies in {city}?",
    ),
}
"""Message templates per team (the label)."""

_ROUTING_FILL = {
    "product": ("kettle", "headset", "smart watch", "router", "camera", "blender", "tablet", "speaker", "lamp", "printer"),
    "city": ("Lyon", "Leeds", "Porto", "Graz", "Turin", "Malmo", "Ghent", "Cork", "Bonn", "Split"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "the 3rd", "the 14th"),
}
_ROUTING_OPENERS = ("", "", "Hello, ", "Hi team, ", "Good morning. ", "Hey, ", "Dear support, ")
_ROUTING_CLOSERS = ("", "", " Thanks.", " Please help.", " Thank you in advance.", " Regards, {name}.", " This is urgent.")
_NAMES = ("Ana", "Tom", "Priya", "Lars", "Mei", "Omar", "Sofia", "Jan", "Zoe", "Ravi")


def routing_rows(n: int, seed: int = 0) -> list[dict[str, list[dict[str, str]]]]:
    """Chat rows (``messages`` format): a generated customer message and the one-word team it goes to (six
    teams, balanced). The instruction, :data:`ROUTING_INSTRUCTION`, is left to the recipe's system prompt, so a
    few-shot prompt repeats only the solved messages, not the instruction."""
    rng = random.Random(f"routing-{seed}")
    teams = list(ROUTING_TEAMS)
    rows, seen = [], set()
    while len(rows) < n:
        team = teams[len(rows) % len(teams)]
        fill = {key: rng.choice(values) for key, values in _ROUTING_FILL.items()}
        name = rng.choice(_NAMES)
        fill.update(
            order=f"#{rng.randint(10000, 99999)}", invoice=f"INV-{rng.randint(1000, 9999)}",
            amount=f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d} EUR", weeks=str(rng.randint(2, 9)),
            code=str(rng.randint(10, 99)), minutes=str(rng.randint(5, 40)), count=str(rng.randint(5, 60)),
            email=f"{name.lower()}{rng.randint(1, 99)}@example.com", name=name,
        )
        body = rng.choice(ROUTING_TEAMS[team]).format(**fill)
        opener = rng.choice(_ROUTING_OPENERS)
        if opener.endswith(", ") and not body.startswith("I "):
            body = body[0].lower() + body[1:]
        message = opener + body + rng.choice(_ROUTING_CLOSERS).format(**fill)
        if message in seen:  # every message once, so no held-out row is also a training row
            continue
        seen.add(message)
        rows.append({"messages": [{"role": "user", "content": message}, {"role": "assistant", "content": team}]})
    rng.shuffle(rows)
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
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
    write_jsonl(routing_rows(400, seed=0), root / "routing.jsonl")
    print(f"wrote {root}")


if __name__ == "__main__":  # pragma: no cover
    main()
