"""The export smoke test: greedy replies to a few held-out prompts must each stop at an EOS id.

A model that does not stop under its own generation config is the most common fine-tuning
complaint; it comes from a chat template other than the one used in training (the model never
sees the turn structure it learned) or from EOS ids that miss the end-of-turn token (the model
says it is done and generation goes on). The test generates with the exported folder's own
template and generation config, as any user will, and names the cause when a reply runs on.

A sound model may also give a long answer, so the length cap comes from the data the run trained
on and the model's context: twice the longest trained answer, at least 256 tokens, within the room
the context leaves after the prompt. A reply that reaches the cap without any special token is
first taken for a long answer (the message says how to raise the cap), and the template is blamed
only when it cannot be: the reply loops, or the cap already fills the context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftx.errors import RunError

from .stops import as_id_list, template_end_of_turn, token_names

Messages = list[dict[str, str]]

MIN_CAP = 256
"""The smallest default cap: room for an ordinary long answer whatever the data's answers were."""

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
    cap_source: str = "given"
    """How the cap was chosen: ``given`` (``--smoke-max-tokens``) or how the default was worked out."""
    room: int | None = None
    """The most new tokens the context leaves after the longest prompt, when the context is known."""

    @property
    def stopped(self) -> list[Generation]:
        return [g for g in self.generations if g.stopped_at is not None]

    def summary(self) -> str:
        """``4 of 4 greedy replies (eval split) stopped at an EOS id, after 5, 7, 9, 12 tokens (cap 256 ...)``."""
        stopped = self.stopped
        lengths = ", ".join(str(len(g.token_ids)) for g in stopped)
        after = f", after {lengths} tokens" if stopped else ""
        return (f"{len(stopped)} of {len(self.generations)} greedy replies ({self.prompt_source}) stopped at an EOS "
                f"id{after} (cap {self.max_new_tokens}: {self.cap_source})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "eos_token_id": self.eos_ids,
            "max_new_tokens": self.max_new_tokens,
            "cap": self.cap_source,
            "prompts_from": self.prompt_source,
            "stopped": len(self.stopped),
            "replies": len(self.generations),
            "generations": [
                {"prompt": g.prompt[-1]["content"] if g.prompt else "", "reply": g.text, "stopped_at": g.stopped_at,
                 "tokens": len(g.token_ids)}
                for g in self.generations
            ],
        }


@dataclass
class SmokeInputs:
    """Prompts to generate on, their reference answers, where they came from, and every trained answer."""

    prompts: list[Messages]
    references: list[str]
    origin: str
    answers: list[str] = field(default_factory=list)
    """The answers of the run's training examples (empty when the data is gone): they size the cap."""


def smoke_inputs(run_dir: Path | None, count: int, echo: Callable[[str], None]) -> SmokeInputs:
    """Up to ``count`` held-out prompts of the run (its eval split rebuilt from the lock), their references,
    and the answers it trained on.

    Falls back to :data:`GENERIC_PROMPTS` (saying so) when there is no run folder or its data is gone.
    """
    if run_dir is not None:
        try:
            from ftx.api import run_examples

            data = run_examples(run_dir)  # split exactly as the run split it
            prompts, refs = examples_to_prompts(list(data.eval) or list(data.train), count)
            if prompts:
                _, answers = examples_to_prompts(list(data.train), len(data.train))
                return SmokeInputs(prompts, refs, "eval split", answers)
            echo("smoke test: the run's data has no chat prompts; using generic prompts")
        except Exception as exc:  # noqa: BLE001 - missing data must not block an export; say why
            why = " ".join(str(exc).split())
            echo(f"smoke test: cannot rebuild the run's eval split ({type(exc).__name__}: {why}); using generic prompts")
    return SmokeInputs([list(p) for p in GENERIC_PROMPTS[:count]], [], "generic prompts")


def eval_prompts(run_dir: Path | None, count: int, echo: Callable[[str], None]) -> tuple[list[Messages], list[str], str]:
    """``(prompts, references, origin)`` of :func:`smoke_inputs`."""
    found = smoke_inputs(run_dir, count, echo)
    return found.prompts, found.references, found.origin


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


def default_cap(tokenizer: Any, answers: Sequence[str], room: int | None = None) -> tuple[int, str]:
    """``(cap, how)``: twice the longest trained answer in tokens, at least :data:`MIN_CAP`, within ``room``."""
    longest_texts = sorted(answers, key=len, reverse=True)[:256]  # the longest in tokens is among the longest in text
    ids = tokenizer(longest_texts, add_special_tokens=False)["input_ids"] if longest_texts else []
    longest = max((len(row) for row in ids), default=0)
    cap = max(MIN_CAP, 2 * longest)
    how = (f"2 x the longest trained answer ({longest} tokens), at least {MIN_CAP}" if answers
           else f"{MIN_CAP} without the run's answers")
    if room is not None and cap > room:
        return max(1, room), f"{how}, cut to the {room} tokens the context leaves"
    return cap, how


def context_room(model: Any, tokenizer: Any, prompts: Sequence[Messages]) -> int | None:
    """New tokens the model's context leaves after the longest rendered prompt, when the context is known."""
    from .engine import context_length

    limit = context_length(model, tokenizer)
    if limit is None or not prompts:
        return None
    longest = max(len(tokenizer(tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True),
                                add_special_tokens=False)["input_ids"]) for p in prompts)
    return max(1, limit - longest)


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
                   max_new_tokens: int, prompt_source: str = "eval split", cap_source: str = "given",
                   room: int | None = None) -> SmokeReport:
    """Generate greedily under ``eos_ids`` and record where each reply stopped."""
    report = SmokeReport(sorted(set(eos_ids)), max_new_tokens, prompt_source=prompt_source, cap_source=cap_source,
                         room=room)
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
    stopped = report.stopped
    lines = [
        (f"smoke test failed: {len(failed)} of {len(report.generations)} greedy replies did not stop at an EOS id "
         f"within {report.max_new_tokens} new tokens (the cap: {report.cap_source})."),
        f"  replies that stopped: {len(stopped)}" + (
            f", after {', '.join(str(len(g.token_ids)) for g in stopped)} tokens" if stopped else ""),
        f"  generation_config.json eos_token_id: {token_names(tokenizer, report.eos_ids)}",
        f"  the chat template ends assistant turns with: {ends_with}",
    ]
    for g in failed[:3]:
        emitted = sorted({t for t in g.token_ids if t in special and t not in report.eos_ids})
        prompt = g.prompt[-1]["content"] if g.prompt else ""
        lines.append(f"  prompt {prompt[:60]!r} -> {g.text[:80]!r}...")
        lines.append("    " + diagnose(tokenizer, emitted, end, report.eos_ids, g.token_ids, report))
    lines.append("Nothing was exported. Fix the cause, or pass --no-smoke-test to export anyway.")
    raise SmokeTestFailed("\n".join(lines))


def loops(ids: Sequence[int], span: int = 12) -> bool:
    """True when the reply's last ``span`` tokens already occurred earlier in it: a model going round in circles."""
    if len(ids) < 2 * span:
        return False
    tail = list(ids[-span:])
    head = list(ids[:-span])
    return any(head[i:i + span] == tail for i in range(len(head) - span + 1))


def diagnose(tokenizer: Any, emitted: list[int], end: int | None, eos_ids: Sequence[int],
             ids: Sequence[int] = (), report: SmokeReport | None = None) -> str:
    """Why one reply ran on: EOS mismatch, a new turn begun (template mismatch), a long answer, or no end at all."""
    if end is not None and end in emitted:
        return (f"EOS mismatch: the model ended its turn with {token_names(tokenizer, [end])}, which is not in "
                f"eos_token_id {as_id_list(list(eos_ids))}; add it to generation_config.json")
    if emitted:
        return (f"EOS or template mismatch: the model emitted {token_names(tokenizer, emitted)}, none of them an EOS "
                f"id {as_id_list(list(eos_ids))}; the saved chat template or EOS ids differ from training's")
    token = token_names(tokenizer, [end]) if end is not None else "an EOS token"
    blame = (f"the model never produced {token}: the chat template may not be the one it was trained with "
             "(template mismatch), or it has not trained long enough to learn to end its turn")
    if report is None:
        return blame
    cap = report.max_new_tokens
    if loops(ids):
        return f"it reached the {cap}-token cap repeating itself; {blame}"
    if report.room is not None and cap >= report.room:
        return f"it filled the {cap} tokens the context leaves without ending; {blame}"
    more = f" (the context leaves room for {report.room})" if report.room is not None else ""
    return (f"it reached the {cap}-token cap without repeating itself: it may be a sound long answer; raise the "
            f"cap with --smoke-max-tokens{more} and export again. If it still runs on, {blame}")
