"""ROUGE, BLEU and chrF of the model's greedy answers to the held-out prompts.

Answers come from :func:`ftx.generation.generate_replies`, which caches them per model weights:
a recipe with exact-match, ROUGE and BLEU generates once per phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftx.api import generate_replies
from ftx_hookspecs import ChatExample, Example, RunContext

from . import BleuOptions, ChrfOptions, GeneratedTextOptions, RougeOptions


def answers(model: Any, examples: Sequence[Example], ctx: RunContext, options: GeneratedTextOptions) -> tuple[list[str], list[str]]:
    """Greedy answers and references of the chat examples among ``examples``."""
    chats = [e for e in examples if isinstance(e, ChatExample)]
    if options.limit:
        chats = chats[: options.limit]
    if not chats:
        return [], []
    replies = generate_replies(
        model, ctx.tokenizer, [e.prompt_messages for e in chats],
        max_new_tokens=options.max_new_tokens, batch_size=options.batch_size,
    )
    return replies, [e.reference for e in chats]


class Rouge:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures."""

    TYPES = ("rouge1", "rouge2", "rougeL")

    def __init__(self, options: RougeOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        from rouge_score.rouge_scorer import RougeScorer

        replies, references = answers(model, examples, ctx, self.options)
        if not references:
            return {}
        scorer = RougeScorer(list(self.TYPES), use_stemmer=self.options.stemmer)
        totals = dict.fromkeys(self.TYPES, 0.0)
        for reply, reference in zip(replies, references):
            scores = scorer.score(reference, reply)
            for kind in self.TYPES:
                totals[kind] += scores[kind].fmeasure
        return {kind: total / len(references) for kind, total in totals.items()}


class Bleu:
    """Corpus BLEU over all answers."""

    def __init__(self, options: BleuOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        from sacrebleu.metrics import BLEU

        replies, references = answers(model, examples, ctx, self.options)
        if not references:
            return {}
        metric = BLEU(tokenize=self.options.tokenize, lowercase=self.options.lowercase, effective_order=True)
        return {"bleu": float(metric.corpus_score(replies, [references]).score)}


class Chrf:
    """Corpus chrF (character n-gram F-score) over all answers."""

    def __init__(self, options: ChrfOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        from sacrebleu.metrics import CHRF

        replies, references = answers(model, examples, ctx, self.options)
        if not references:
            return {}
        name = "chrf++" if self.options.word_order == 2 else "chrf"
        return {name: float(CHRF(word_order=self.options.word_order).corpus_score(replies, [references]).score)}
