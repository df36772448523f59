"""``[data] mix``: other data mixed into the training split at a share, so a run keeps what the model knew.

Fine-tuning on one narrow task can make a model worse at everything else (the forgetting check measures
it: general-text perplexity before and after). Replay is the usual remedy: a share of each batch comes
from general text or an earlier task. Each ``[data] mix`` table names a data set (files in any registered
format, or ``source = "general-text"``) and ``ratio``, the share of the training split it makes up:
with ``T`` task examples and shares ``r_i``, source ``i`` gives ``round(r_i * T / (1 - sum r))`` examples
(drawn without repeats while the source has enough, then cycled), so the task keeps every example.

Mixed examples join the training split only: held-out figures stay the task's own. They are drawn and
placed (among the task examples, whose order is kept) by the training seed, and the training split's
content digest, which keys the tokenised cache, covers them and their places.

``source = "general-text"`` replays the text the forgetting check draws from, minus the passages it
measures on: for built-in models, more sentences of the same generated language (any sentence equal to a
measured one is left out); for an ``[evaluation] forgetting_text`` file, its lines after the first
``forgetting_limit``; ftx's own English prose is all measured by default, so there it is a recipe error.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from ftx_hookspecs import Example, TextExample

from ..errors import DataError
from ..recipe.schema import DataSection, EvaluationSection, MixSource

CAUSAL_KINDS = ("chat", "text")
"""Example kinds a language-model objective trains on together: a chat task can replay plain text."""

GENERATED_SEED = 7
"""The seed of the generated general text the forgetting check measures on (:func:`ftx.evaluation.general_texts`)."""


def mix_label(index: int) -> str:
    """The recipe path of a mix table, which also names its examples in reports."""
    return f"data.mix[{index}]"


def _general_origin(model_name: str | None, evaluation: EvaluationSection) -> tuple[dict[str, Any], str | None]:
    """Where ``source = "general-text"`` draws from, and why it cannot (``None`` when it can)."""
    limit = evaluation.forgetting_limit
    if evaluation.forgetting_text != "auto":
        path = Path(evaluation.forgetting_text)
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError:
            lines = []  # evaluation.forgetting_text reports the file itself
        spare = len(lines) - limit
        origin = {"kind": "file", "path": str(path), "skip": limit}
        if spare <= 0:
            return origin, (f"{path} has {len(lines)} passages and the forgetting check measures on the first "
                            f"{limit} (evaluation.forgetting_limit): add passages beyond those for replay, or give "
                            "a file of your own with train = '...' and format = 'text'")
        return origin, None
    if model_name is not None and model_name.startswith("builtin:"):
        return {"kind": "generated", "skip": limit}, None
    from ..general_text import ENGLISH

    if len(ENGLISH) <= limit:
        return {"kind": "english", "skip": limit}, (
            f"ftx's English prose ({len(ENGLISH)} passages) is all measured by the forgetting check "
            f"(evaluation.forgetting_limit = {limit}), so training on it would hide forgetting: give general text of "
            "your own (train = 'general.jsonl', format = 'text'), or lower evaluation.forgetting_limit")
    return {"kind": "english", "skip": limit}, None


def mix_summary(section: DataSection) -> str:
    """``general-text 20%, data/old-task.jsonl 10%``: what ``ftx validate`` shows of the mix."""
    parts = []
    for item in section.mix:
        what = item.source or ", ".join(Path(p).name for p in ([item.train] if isinstance(item.train, str) else item.train or []))
        parts.append(f"{what} {item.ratio:.0%}")
    return ", ".join(parts)


def mixed_counts(task: int, ratios: Sequence[float]) -> list[int]:
    """Examples drawn from each source so that each makes up its share of the training split (within 1)."""
    whole = task / (1.0 - sum(ratios))
    return [round(ratio * whole) for ratio in ratios]


def _general_text_examples(item: MixSource, count: int, seed: int) -> list[Example]:
    """``count`` passages of the forgetting check's text that it does not measure on (see the module's notes)."""
    origin = getattr(item, "_origin", None)
    if origin is None:
        raise DataError("data.mix: source = 'general-text' needs a recipe loaded by ftx (it depends on the model "
                        "and [evaluation])")
    if origin["kind"] == "generated":
        from ..demo_data import general_text

        measured = set(general_text(origin["skip"], seed=GENERATED_SEED))
        texts: list[str] = []
        stream = general_text(1 << 30, seed=1000 + seed)
        for sentence in stream:
            if len(texts) >= count:
                break
            if sentence not in measured:
                texts.append(sentence)
        return [TextExample(t, {"source": "general-text"}) for t in texts]
    if origin["kind"] == "file":
        lines = Path(origin["path"]).read_text(encoding="utf-8").splitlines()
        pool = [line.strip() for line in lines if line.strip()][origin["skip"]:]
    else:
        from ..general_text import ENGLISH

        pool = ENGLISH[origin["skip"]:]
    if not pool:
        raise DataError("data.mix: no general text is left once the forgetting check's passages are held out")
    return _draw([TextExample(t, {"source": "general-text"}) for t in pool], count, seed)


def _draw(pool: list[Example], count: int, seed: int) -> list[Example]:
    """``count`` examples of ``pool`` in a seeded order: each once before any repeats (a small pool is cycled)."""
    rng = random.Random(seed)
    out: list[Example] = []
    while len(out) < count:
        order = list(range(len(pool)))
        rng.shuffle(order)
        out.extend(pool[i] for i in order[: count - len(out)])
    return out


class MixedExamples(Sequence[Example]):
    """The task's training examples with mixed ones at chosen places, read lazily from both (large splits)."""

    def __init__(self, task: Sequence[Example], mixed: list[Example], places: list[int], digest: str) -> None:
        self.task = task
        self.mixed = mixed
        self.digest = digest
        self._mixed_at = {place: i for i, place in enumerate(places)}
        import numpy as np

        is_mixed = np.zeros(len(task) + len(mixed), dtype=bool)
        is_mixed[places] = True
        self._task_before = np.cumsum(~is_mixed) - (~is_mixed)  # task examples before each place

    def __len__(self) -> int:
        return len(self.task) + len(self.mixed)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...
    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        at = self._mixed_at.get(index)
        return self.mixed[at] if at is not None else self.task[int(self._task_before[index])]

    def __iter__(self) -> Iterator[Example]:
        for i in range(len(self)):
            yield self[i]


def describe_mix(report: Any) -> str | None:
    """``mix: 1800 task + 450 from data.mix[0] (20.0%) of 2250 train examples`` or ``None`` without a mix."""
    mixed = getattr(report, "mixed", None)
    if not mixed:
        return None
    total = sum(mixed.values())
    parts = [f"{count} from {label} ({count / total:.1%})" for label, count in mixed.items() if label != "task"]
    return f"mix: {mixed['task']} task + " + " + ".join(parts) + f" of {total} train examples"
