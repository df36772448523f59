"""The evaluation side of a run: before/after/baseline scores, forgetting, overfitting, samples, gate.

The runner hands a :class:`Review` the model twice, before and after training; it runs the
recipe's evaluators on the held-out split, the optional few-shot baseline of the base model
("did fine-tuning beat prompting?"), the general-text perplexity of the forgetting check, and
keeps a few sample generations for the report. :meth:`Review.finish` adds the overfitting
verdict (from the run's loss history) and the gate to ``metrics.json`` and writes the report.
Importing this module imports no torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ftx_hookspecs import ChatExample, Example

from .errors import EvaluationSkipped
from .layout import METRICS, SAMPLES

CHANCE_SHARE = 0.5
"""A base model whose general-text perplexity is at least this share of its vocabulary knows no general text
(an untrained built-in model): the forgetting check is skipped rather than flagging noise."""

SAMPLE_TOKENS = 64
"""Generation budget of the report's samples; equal to the evaluators' default so replies come from the cache."""


def unique_names(names: Iterable[str]) -> list[str]:
    """Evaluator names made unique in order: ``exact-match``, ``exact-match-2``, ..."""
    out: list[str] = []
    for base in names:
        name, n = base, 2
        while name in out:
            name = f"{base}-{n}"
            n += 1
        out.append(name)
    return out


def evaluate_all(
    evaluators: Sequence[tuple[str, Any]], model: Any, examples: Sequence[Example], run: Any, label: str,
    skipped: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """Run every evaluator on ``examples``; one entry per evaluator name. Skips are noted in ``skipped``."""
    results: dict[str, dict[str, float]] = {}
    if not examples:
        return results
    for name, evaluator in evaluators:
        started = time.perf_counter()
        try:
            figures = evaluator.evaluate(model, examples, run)
        except EvaluationSkipped as exc:
            if skipped is not None:
                skipped[name] = str(exc)
            run.echo(f"  {label:<8} {name}: skipped ({exc})")
            continue
        results[name] = {k: float(v) for k, v in figures.items()}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in results[name].items())
        run.echo(f"  {label:<8} {name}: {shown}  ({time.perf_counter() - started:.1f}s)")
    return results


def few_shot(examples: Sequence[Example], shots: Sequence[ChatExample]) -> list[Example]:
    """Chat examples with ``shots`` prepended as earlier turns (after any system turn); others dropped."""
    prefix = [m for shot in shots for m in shot.messages if m["role"] != "system"]
    out: list[Example] = []
    for example in examples:
        if not isinstance(example, ChatExample):
            continue
        system = [m for m in example.messages[:1] if m["role"] == "system"]
        rest = example.messages[len(system):]
        out.append(ChatExample([*system, *prefix, *rest], {**example.meta, "shots": len(shots)}))
    return out


def general_texts(section: Any, model_name: str) -> tuple[list[str], str]:
    """The forgetting check's passages and where they came from (the recipe's file or the project's default)."""
    limit = section.forgetting_limit
    if section.forgetting_text != "auto":
        from pathlib import Path

        lines = Path(section.forgetting_text).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()][:limit], section.forgetting_text
    if model_name.startswith("builtin:"):
        from .demo_data import general_text

        return list(general_text(limit, seed=7)), "generated general text (ftx.demo_data.general_text, seed 7)"
    from .general_text import ENGLISH

    return ENGLISH[:limit], "English prose shipped with ftx (ftx.general_text)"


def text_perplexity(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 16, max_length: int = 256) -> float:
    """Perplexity of a causal LM on plain passages (every token after the first is scored)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[start : start + batch_size]), return_tensors="pt", padding=True,
                                  truncation=True, max_length=max_length).to(device)
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
                labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)[:, 1:]
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
                )
                total += float(loss)
                count += int((labels != -100).sum())
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return math.exp(min(total / max(count, 1), 50.0))


def overfitting_watch(history: Sequence[dict[str, float]], tolerance: float) -> dict[str, Any]:
    """Did validation loss rise while training loss fell? Read from the run's logged history."""
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    trains = [(h["step"], h["loss"]) for h in history if "loss" in h]
    stop = next((h for h in history if "early_stopped" in h), None)
    out: dict[str, Any] = {"checked": False, "warning": False}
    if stop is not None:
        out["early_stopped_at_step"] = int(stop["step"])
        out["best_step"] = int(stop["best_step"])
        out["restored_best"] = bool(stop.get("restored_best", 0.0))
    if len(evals) < 2 or not trains:
        out["reason"] = "fewer than two validation-loss evaluations (set train.eval_every and data.eval)"
        return out
    best_step, best = min(evals, key=lambda e: e[1])
    last_step, last = evals[-1]
    before_best = [loss for step, loss in trains if step <= best_step] or [trains[0][1]]
    after_best = [loss for step, loss in trains if step > best_step]
    train_at_best, train_last = before_best[-1], (after_best or before_best)[-1]
    warning = last_step > best_step and last > best * (1 + tolerance) and train_last < train_at_best
    out.update({
        "checked": True, "warning": warning, "best_eval_loss": best, "best_eval_step": int(best_step),
        "final_eval_loss": last, "train_loss_at_best": train_at_best, "final_train_loss": train_last,
    })
    if warning:
        out["message"] = (
            f"overfitting: validation loss rose from {best:.4g} (step {int(best_step)}) to {last:.4g} "
            f"(step {int(last_step)}) while training loss fell from {train_at_best:.4g} to {train_last:.4g}; "
            "train fewer steps, add data, or set [evaluation] early_stopping_patience"
        )
    return out


class Review:
    """Everything a run measures besides training itself, collected across the before and after phases."""

    def __init__(self, recipe: Any, run: Any, evaluators: Sequence[tuple[str, Any]]) -> None:
        self.recipe = recipe
        self.run = run
        self.evaluators = list(evaluators)
        self.section = recipe.evaluation
        self.skipped: dict[str, str] = {}
        self.baseline: dict[str, dict[str, float]] = {}
        self.forgetting: dict[str, Any] = {}
        self.samples: list[dict[str, Any]] = []
        self._texts: list[str] = []
        causal = getattr(recipe.objective.spec, "model_head", "causal-lm") == "causal-lm"
        if self.section.forgetting and causal:
            self._texts, source = general_texts(self.section, recipe.model.name)
            self.forgetting = {"text": source, "passages": len(self._texts), "threshold": self.section.forgetting_threshold}

    def before(self, model: Any) -> dict[str, dict[str, float]]:
        """Score the base model: evaluators, samples, general-text perplexity and the few-shot baseline."""
        data = self.run.data
        scores = evaluate_all(self.evaluators, model, data.eval, self.run, "before", self.skipped)
        self._sample(model, "before", data.eval)
        if self._texts:
            perplexity = text_perplexity(model, self.run.tokenizer, self._texts)
            if perplexity >= CHANCE_SHARE * len(self.run.tokenizer):
                self.forgetting["skipped"] = (
                    f"the base model is near chance on general text (perplexity {perplexity:.4g} for "
                    f"{len(self.run.tokenizer)} tokens): it has no general ability to forget"
                )
                self.run.echo(f"  forgetting check skipped: {self.forgetting['skipped']}")
            else:
                self.forgetting["before_perplexity"] = perplexity
        shots = [e for e in data.train if isinstance(e, ChatExample)][: self.section.baseline_shots]
        if self.section.baseline_shots and data.eval:
            if len(shots) < self.section.baseline_shots:
                self.run.echo(f"  baseline skipped: needs {self.section.baseline_shots} chat examples in the training data")
            else:
                prompted = few_shot(data.eval, shots)
                self.baseline = evaluate_all(self.evaluators, model, prompted, self.run, f"{len(shots)}-shot")
                self._sample(model, "baseline", prompted)
        return scores

    def after(self, model: Any) -> dict[str, dict[str, float]]:
        """Score the trained model: evaluators, samples and general-text perplexity (then the forgetting verdict)."""
        scores = evaluate_all(self.evaluators, model, self.run.data.eval, self.run, "after", self.skipped)
        self._sample(model, "after", self.run.data.eval)
        if self._texts and "before_perplexity" in self.forgetting:
            before = self.forgetting["before_perplexity"]
            after = text_perplexity(model, self.run.tokenizer, self._texts)
            increase = (after - before) / before
            flagged = increase > self.section.forgetting_threshold
            self.forgetting.update({"after_perplexity": after, "increase": increase, "flagged": flagged})
            verdict = "FORGETTING" if flagged else "ok"
            self.run.echo(f"  forgetting: general-text perplexity {before:.4g} -> {after:.4g} "
                          f"({increase:+.1%}, threshold {self.section.forgetting_threshold:.0%}): {verdict}")
        return scores

    def _sample(self, model: Any, phase: str, examples: Sequence[Example]) -> None:
        chats = [e for e in examples if isinstance(e, ChatExample)][: self.section.samples]
        if not chats or getattr(self.recipe.objective.spec, "model_head", "causal-lm") != "causal-lm":
            return
        from .generation import generate_replies

        replies = generate_replies(model, self.run.tokenizer, [e.prompt_messages for e in chats],
                                   max_new_tokens=SAMPLE_TOKENS, tools=[e.meta.get("tools") for e in chats])
        if not self.samples:
            self.samples = [{"prompt": _prompt_text(e), "reference": e.reference} for e in chats]
        for sample, reply in zip(self.samples, replies):
            sample[phase] = reply

    def finish(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Add baseline, forgetting, overfitting, skips and gate to ``metrics``; write samples and the report."""
        from .gate import check_gate, parse_gate
        from .rundir import write_json

        if self.baseline:
            metrics["baseline"] = self.baseline
            metrics["baseline_shots"] = self.section.baseline_shots
        if "increase" in self.forgetting or "skipped" in self.forgetting:
            metrics["forgetting"] = self.forgetting
        watch = overfitting_watch(self.run.history, self.section.overfit_tolerance)
        metrics["overfitting"] = watch
        if watch.get("message"):
            self.run.echo(f"warning: {watch['message']}")
        if self.skipped:
            metrics["skipped"] = self.skipped
        names = [name for name, _ in self.evaluators]
        thresholds, _ = parse_gate(self.section.gate, names)
        if thresholds:
            metrics["gate"] = check_gate(thresholds, metrics, names)
        write_json(self.run.run_dir / METRICS, metrics)
        if self.samples:
            write_json(self.run.run_dir / SAMPLES, self.samples)
        try:
            from .report import write_report

            write_report(self.run.run_dir, metrics, self.run.history, self.recipe.to_dict(), self.samples)
        except Exception as exc:  # noqa: BLE001 - a finished run keeps its model and metrics
            self.run.echo(f"warning: report not written: {type(exc).__name__}: {exc}")
        return metrics


def _prompt_text(example: ChatExample) -> str:
    turns = example.prompt_messages
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in turns)
