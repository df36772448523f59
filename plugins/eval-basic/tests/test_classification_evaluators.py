"""accuracy and macro F1 of generated labels (generation stubbed: these test the scoring)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ftx_hookspecs import ChatExample

from ftx_eval_basic import ClassificationOptions
from ftx_eval_basic import evaluators as ev


def chat(question: str, label: str) -> ChatExample:
    return ChatExample([{"role": "user", "content": question}, {"role": "assistant", "content": label}])


@pytest.fixture
def labelled(monkeypatch: pytest.MonkeyPatch) -> list[ChatExample]:
    examples = [chat("a", "pos"), chat("b", "pos"), chat("c", "neg"), chat("d", "neg")]
    replies = {"a": "pos", "b": "neg", "c": "neg", "d": " NEG "}
    monkeypatch.setattr(ev, "generate_replies",
                        lambda model, tok, prompts, **kw: [replies[p[-1]["content"]] for p in prompts])
    return examples


def test_accuracy_counts_matching_labels(labelled: list[ChatExample]) -> None:
    ctx = SimpleNamespace(tokenizer=None)
    assert ev.Accuracy(ClassificationOptions()).evaluate(None, labelled, ctx) == {"accuracy": 0.5}
    lowered = ev.Accuracy(ClassificationOptions(normalize="lower")).evaluate(None, labelled, ctx)
    assert lowered == {"accuracy": 0.75}


def test_macro_f1_averages_per_label(labelled: list[ChatExample]) -> None:
    # pos: tp 1, fn 1 -> 2/3; neg (lower-cased): tp 2, fp 1 -> 4/5; macro = (2/3 + 4/5) / 2
    figures = ev.MacroF1(ClassificationOptions(normalize="lower")).evaluate(None, labelled, SimpleNamespace(tokenizer=None))
    assert figures["f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_macro_f1_weights_rare_labels_equally() -> None:
    references = ["a"] * 9 + ["b"]
    assert ev.macro_f1(["a"] * 10, references) == pytest.approx((2 * 9 / (2 * 9 + 1)) / 2)
    assert ev.macro_f1(references, references) == 1.0


def test_evaluators_are_registered(plugin_manager) -> None:  # type: ignore[no-untyped-def]
    names = {r.spec.name for r in plugin_manager.registry.all("evaluator")}
    assert {"accuracy", "f1", "exact-match", "loss"} <= names
