"""ROUGE, BLEU, chrF on stubbed generations, and the lm-eval bridge's skip where the harness is missing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ftx.evaluation import EvaluationSkipped, evaluate_all
from ftx_hookspecs import ChatExample

from ftx_eval_text import BleuOptions, ChrfOptions, LmEvalOptions, RougeOptions
from ftx_eval_text import harness, scorers


def chat(prompt: str, reference: str) -> ChatExample:
    return ChatExample([{"role": "user", "content": prompt}, {"role": "assistant", "content": reference}])


EXAMPLES = [chat("1", "the cat sat on the mat"), chat("2", "a dog runs in the park")]


def stub(monkeypatch: pytest.MonkeyPatch, replies: list[str]) -> None:
    monkeypatch.setattr(scorers, "generate_replies", lambda model, tok, prompts, **kw: replies[: len(prompts)])


def test_rouge_is_one_for_identical_answers_and_partial_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = SimpleNamespace(tokenizer=None)
    stub(monkeypatch, ["the cat sat on the mat", "a dog runs in the park"])
    assert scorers.Rouge(RougeOptions()).evaluate(None, EXAMPLES, ctx) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    stub(monkeypatch, ["the cat sat", "nothing similar here"])
    figures = scorers.Rouge(RougeOptions()).evaluate(None, EXAMPLES, ctx)
    assert figures["rouge1"] == pytest.approx((2 * 3 / 9) / 2)  # P=1, R=1/2 -> F=2/3 for the first, 0 for the second
    assert 0 < figures["rouge2"] < figures["rouge1"]


def test_bleu_and_chrf_rank_a_closer_answer_higher(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = SimpleNamespace(tokenizer=None)
    stub(monkeypatch, ["the cat sat on the mat", "a dog runs in the park"])
    perfect = scorers.Bleu(BleuOptions()).evaluate(None, EXAMPLES, ctx)["bleu"]
    chrf_perfect = scorers.Chrf(ChrfOptions()).evaluate(None, EXAMPLES, ctx)["chrf"]
    stub(monkeypatch, ["the cat sat on a mat", "a dog ran in a park"])
    close = scorers.Bleu(BleuOptions()).evaluate(None, EXAMPLES, ctx)["bleu"]
    chrf_close = scorers.Chrf(ChrfOptions(word_order=2)).evaluate(None, EXAMPLES, ctx)["chrf++"]
    assert perfect == pytest.approx(100.0) and chrf_perfect == pytest.approx(100.0)
    assert 0 < close < perfect and 0 < chrf_close < chrf_perfect


def test_lm_eval_skips_with_a_reason_when_the_harness_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "harness_available", lambda: False)
    evaluator = harness.LmEval(LmEvalOptions(tasks=["arc_easy"]))
    with pytest.raises(EvaluationSkipped, match="not installed"):
        evaluator.evaluate(None, EXAMPLES, SimpleNamespace(tokenizer=None))
    lines: list[str] = []
    skipped: dict[str, str] = {}
    run = SimpleNamespace(echo=lines.append)
    assert evaluate_all([("lm-eval", evaluator)], None, EXAMPLES, run, "after", skipped) == {}
    assert "pip install" in skipped["lm-eval"] and "skipped" in lines[0]


def test_lm_eval_results_are_flattened_to_numbers() -> None:
    results = {"arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,strict": 0.25}}
    assert harness.flatten_results(results) == {
        "arc_easy.acc": 0.5, "arc_easy.acc_stderr": 0.1, "arc_easy.exact_match_strict": 0.25,
    }


def test_lm_eval_needs_a_task() -> None:
    with pytest.raises(ValueError, match="tasks"):
        LmEvalOptions(tasks=[])
