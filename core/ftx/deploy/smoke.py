"""The export smoke test: greedy replies to a few held-out prompts must each stop at an EOS id.

A model that does not stop under its own generation config is the most common fine-tuning
complaint; it comes from a chat template other than the one used in training (the model never
sees the turn structure it learned) or from EOS ids that miss the end-of-turn token (the model
says it is done and generation goes on). The test generates with the exported folder's own
template and generation config, as any user will, and names the cause when a reply runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunError
from .stops import as_id_list, template_end_of_turn, token_names

Messages = list[dict[str, str]]

GENERIC_PROMPTS: tuple[Messages, ...] = (
    [{"role": "user", "content": "Hello! Who are you?"}],
    [{"role": "user", "content": "Say one short sentence about the sea."}],
)
"""Used when the run's data is gone or yields no prompts."""


class SmokeTestFailed(RunError):
    """Some generations did not stop at an EOS id before the length cap."""


@dataclass
class Generation:
    """One smoke-test reply: its text, new token ids, and the EOS id it stopped at (None: it ran on)."""

    prompt: Messages
    text: str
    token_ids: list[int]
    stopped_at: int | None


@dataclass
class SmokeReport:
    """What the smoke test generated and with which limits."""

    eos_ids: list[int]
    max_new_tokens: int
    generations: list[Generation] = field(default_factory=list)
    prompt_source: str = "eval split"

    def as_dict(self) -> dict[str, Any]:
        return {
            "eos_token_id": self.eos_ids,
            "max_new_tokens": self.max_new_tokens,
            "prompts_from": self.prompt_source,
            "generations": [
                {"prompt": g.prompt[-1]["content"] if g.prompt else "", "reply": g.text, "stopped_at": g.stopped_at}
                for g in self.generations
            ],
        }


def eval_prompts(run_dir: Path | None, count: int, echo: Callable[[str], None]) -> tuple[list[Messages], list[str], str]:
    """Up to ``count`` held-out prompts of the run (its eval split rebuilt from the lock) and their references.

    Falls back to :data:`GENERIC_PROMPTS` (saying so) when there is no run folder or its data is gone.
    """
    if run_dir is not None:
        try:
            from ..data.prepare import prepare_examples
            from ..plugins import make_plugin_manager
            from .source import lock_recipe

            recipe = lock_recipe(run_dir, make_plugin_manager().registry)
            data = prepare_examples(recipe.data, recipe.data_format.build(), recipe.train.seed)  # as the run split
            prompts, refs = examples_to_prompts(list(data.eval) or list(data.train), count)
            if prompts:
                return prompts, refs, "eval split"
            echo("smoke test: the run's data has no chat prompts; using generic prompts")
        except Exception as exc:  # noqa: BLE001 - missing data must not block an export; say why
            why = " ".join(str(exc).split())
            echo(f"smoke test: cannot rebuild the run's eval split ({type(exc).__name__}: {why}); using generic prompts")
    return [list(p) for p in GENERIC_PROMPTS[:count]], [], "generic prompts"


def examples_to_prompts(examples: Sequence[Any], count: int) -> tuple[list[Messages], list[str]]:
    """Prompts (and reference answers) of chat and preference examples, in order."""
    prompts: list[Messages] = []
    refs: list[str] = []
    for example in examples:
        if len(prompts) >= count:
            break
        if getattr(example, "kind", None) == "chat" and example.prompt_messages:
            prompts.append([dict(m) for m in example.prompt_messages])
            refs.append(example.reference)
        elif getattr(example, "kind", None) == "preference":
            prompts.append([dict(m) for m in example.prompt])
            refs.append(example.chosen)
    return prompts, refs


def default_cap(tokenizer: Any, references: Sequence[str]) -> int:
    """The length cap: twice the longest reference answer in tokens (at least 64), or 256 without references."""
    if not references:
        return 256
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references)
    return max(64, 2 * longest + 8)


def generate_greedy(model: Any, tokenizer: Any, prompts: Sequence[Messages], max_new_tokens: int,
                    eos_ids: Sequence[int] | None = None) -> list[list[int]]:
    """New token ids of greedy replies; EOS ids from ``eos_ids`` or else the model's own generation config."""
    import torch

    texts = [tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        device = next(model.parameters()).device
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = side
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False,
                              "pad_token_id": tokenizer.pad_token_id}
    if eos_ids is not None:
        kwargs["eos_token_id"] = list(eos_ids)
    with torch.no_grad():
        out = model.generate(**batch, **kwargs)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def run_smoke_test(model: Any, tokenizer: Any, prompts: Sequence[Messages], *, eos_ids: Sequence[int],
                   max_new_tokens: int, prompt_source: str = "eval split") -> SmokeReport:
    """Generate greedily under ``eos_ids`` and record where each reply stopped."""
    report = SmokeReport(sorted(set(eos_ids)), max_new_tokens, prompt_source=prompt_source)
    stops = set(eos_ids)
    for prompt, ids in zip(prompts, generate_greedy(model, tokenizer, prompts, max_new_tokens, report.eos_ids)):
        cut = next((i for i, t in enumerate(ids) if t in stops), None)
        kept = ids if cut is None else ids[:cut]
        stopped_at = None if cut is None else ids[cut]
        text = tokenizer.decode(kept, skip_special_tokens=False)
        report.generations.append(Generation(list(prompt), text, kept, stopped_at))
    return report


def check_smoke(report: SmokeReport, tokenizer: Any) -> None:
    """Raise :class:`SmokeTestFailed` naming the cause when any reply did not stop."""
    failed = [g for g in report.generations if g.stopped_at is None]
    if not failed:
        return
    end = template_end_of_turn(tokenizer)
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    ends_with = token_names(tokenizer, [end]) if end is not None else "no special token (only plain text)"
    lines = [
        (f"smoke test failed: {len(failed)} of {len(report.generations)} greedy replies did not stop at an EOS id "
         f"within {report.max_new_tokens} new tokens."),
        f"  generation_config.json eos_token_id: {token_names(tokenizer, report.eos_ids)}",
        f"  the chat template ends assistant turns with: {ends_with}",
    ]
    for g in failed[:3]:
        emitted = sorted({t for t in g.token_ids if t in special and t not in report.eos_ids})
        prompt = g.prompt[-1]["content"] if g.prompt else ""
        lines.append(f"  prompt {prompt[:60]!r} -> {g.text[:80]!r}...")
        lines.append("    " + diagnose(tokenizer, emitted, end, report.eos_ids))
    lines.append("Nothing was exported. Fix the cause, or pass --no-smoke-test to export anyway.")
    raise SmokeTestFailed("\n".join(lines))


def diagnose(tokenizer: Any, emitted: list[int], end: int | None, eos_ids: Sequence[int]) -> str:
    """Why one reply ran on: EOS mismatch, a new turn begun (template mismatch), or no end token at all."""
    if end is not None and end in emitted:
        return (f"EOS mismatch: the model ended its turn with {token_names(tokenizer, [end])}, which is not in "
                f"eos_token_id {as_id_list(list(eos_ids))}; add it to generation_config.json")
    if emitted:
        return (f"EOS or template mismatch: the model emitted {token_names(tokenizer, emitted)}, none of them an EOS "
                f"id {as_id_list(list(eos_ids))}; the saved chat template or EOS ids differ from training's")
    token = token_names(tokenizer, [end]) if end is not None else "an EOS token"
    return (f"the model never produced {token}: the chat template may not be the one it was trained with "
            "(template mismatch), or it has not trained long enough to learn to end its turn")
