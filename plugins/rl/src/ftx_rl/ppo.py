"""The ``ppo`` objective: proximal policy optimisation with a value head, as a transformers Trainer.

TRL 1.x has no PPO trainer any more, so ftx has its own, compact one. Each optimizer step works on
one batch of prompts:

1. **rollout** (every ``num_iterations``-th step): sample one answer per prompt; score it with the
   recipe's rewards; compute the policy's log-probabilities and the value head's estimates of every
   answer token, and the reference model's log-probabilities; per-token rewards are
   ``-beta x (log p - log p_ref)`` plus the score at the answer's last token; advantages by GAE
   (``gamma``, ``lam``), whitened over the batch; returns = advantages + values;
2. **update** (this step and the next ``num_iterations - 1``, on the same answers): the clipped
   policy loss ``max(-A r, -A clip(r, 1 - e, 1 + e))`` with ``r = exp(log p - log p_old)``, plus
   ``value_coef`` x the clipped value loss.

The value head is one linear layer on the policy's last hidden state (shared trunk). It and the
rollout being trained on are saved in every checkpoint, so a resumed run continues exactly where
the interrupted one was, and neither is part of the exported model. The prompts are laid out so
that each step's batch appears ``num_iterations`` times in a row (:func:`repeated_rows`).
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftx.errors import RecipeError
from ftx_hookspecs import RunContext, TrainResult
from ftx_rewards.combine import WeightedReward, total_reward

from . import PPOOptions
from .objective import prompt_rows, sampled_reward_figures

VALUE_HEAD_FILE = "value_head.pt"
ROLLOUT_FILE = "ppo_rollout.pt"


def repeated_rows(rows: list[dict[str, Any]], per_step: int, repeats: int, passes: int, seed: int) -> list[dict[str, Any]]:
    """The training rows in the order they are trained: each pass over ``rows`` shuffled (seeded), cut into
    batches of ``per_step`` prompts (a last, smaller batch is dropped), each batch ``repeats`` times in a row.

    PPO trains ``repeats`` optimizer steps on each batch of answers; laying the prompts out this way
    keeps the Trainer's data order, step count and resume (which skips batches) in step with that.
    """
    out: list[dict[str, Any]] = []
    for n in range(passes):
        order = list(range(len(rows)))
        random.Random(seed + n).shuffle(order)
        for start in range(0, len(order) - per_step + 1, per_step):
            batch = [rows[i] for i in order[start : start + per_step]]
            for _ in range(repeats):
                out.extend(batch)
    return out


@dataclass
class PromptCollator:
    """Left-pads the prompts' token ids; passes the prompt texts and references through for the rewards."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["prompt_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["prompt_ids"])
            ids[row, longest - n :] = torch.tensor(f["prompt_ids"], dtype=torch.long)
            mask[row, longest - n :] = 1
        return {"input_ids": ids, "attention_mask": mask, "prompt_text": [f["prompt_text"] for f in features],
                "reference": [f["reference"] for f in features]}


def masked_mean(values: Any, mask: Any) -> Any:
    """Mean of ``values`` where ``mask`` is 1."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values: Any, mask: Any) -> Any:
    """``values`` shifted and scaled to mean 0 and std 1 over the masked entries; 0 elsewhere."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * (var + 1e-8).rsqrt() * mask


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimates and returns of right-padded token sequences (zero beyond each end)."""
    import torch

    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        following = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * following - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


def completion_mask(completions: Any, stop_ids: list[int]) -> Any:
    """1 for each answer token up to and including its first stop token, 0 after it."""
    import torch

    is_stop = torch.isin(completions, torch.tensor(stop_ids, device=completions.device))
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
    return (~after_stop).float()


def _make_trainer_class() -> Any:
    import torch
    from transformers import Trainer

    class PPOTrainer(Trainer):  # type: ignore[misc]
        """A Trainer whose training step is a PPO step on buffered rollouts (see the module docstring)."""

        loss_is_scaled_for_ga = False  # the Trainer divides by the accumulation steps

        def __init__(self, *, options: PPOOptions, rewards: list[WeightedReward], ref_model: Any, stop_ids: list[int],
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.options = options
            self.reward_funcs = rewards  # named like TRL's online trainers: ftx's divergence watch skips them
            self.ref_model = ref_model
            self.stop_ids = stop_ids
            model = self.model
            hidden = model.config.get_text_config().hidden_size
            generator = torch.Generator().manual_seed(self.args.seed)
            head = torch.nn.Linear(hidden, 1)
            with torch.no_grad():
                head.weight.normal_(0.0, 1.0 / math.sqrt(hidden + 1), generator=generator)
                head.bias.zero_()
            self.value_head = head.to(next(model.parameters()).device)
            self._rollouts: list[dict[str, Any]] = []
            self._rollout_step = -1
            self._micro = (-1, 0)
            self._logs: dict[str, list[float]] = defaultdict(list)

        # -- parameters, checkpoints -------------------------------------------------------------------

        def create_optimizer(self, model: Any = None) -> Any:
            optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
            head = list(self.value_head.parameters())
            if not any(p is head[0] for group in optimizer.param_groups for p in group["params"]):
                optimizer.add_param_group({"params": head, "weight_decay": 0.0})
            return optimizer

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
                torch.save(self.value_head.state_dict(), folder / VALUE_HEAD_FILE)
                torch.save({"step": self._rollout_step, "rollouts": self._rollouts}, folder / ROLLOUT_FILE)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            folder = Path(resume_from_checkpoint)
            device = next(self.model.parameters()).device
            if (folder / VALUE_HEAD_FILE).exists():
                self.value_head.load_state_dict(torch.load(folder / VALUE_HEAD_FILE, map_location=device, weights_only=True))
            if (folder / ROLLOUT_FILE).exists():
                saved = torch.load(folder / ROLLOUT_FILE, map_location=device, weights_only=True)  # tensors, lists, ints
                self._rollout_step, self._rollouts = saved["step"], saved["rollouts"]

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            from torch.utils.data import SequentialSampler

            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        # -- the PPO step ----------------------------------------------------------------------------

        def _forward(self, model: Any, ids: Any, mask: Any, start: int, values: bool) -> tuple[Any, Any]:
            """Log-probabilities of the tokens from ``start`` on (at the sampling temperature), and the value
            head's estimate before each of them."""
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                        output_hidden_states=values)
            logits = out.logits[:, start - 1 : -1].float() / self.options.temperature
            targets = ids[:, start:]
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            if not values:
                return logprobs, None
            hidden = out.hidden_states[-1][:, start - 1 : -1].float()
            return logprobs, self.value_head(hidden).squeeze(-1)

        @torch.no_grad()
        def _sample(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
            """Sampled answers to the batch's prompts: the full token ids, attention mask and answer mask."""
            from transformers import GenerationConfig

            unwrapped = self.accelerator.unwrap_model(model)
            was_training = unwrapped.training
            unwrapped.eval()
            config = GenerationConfig(
                max_new_tokens=self.options.max_completion_length, do_sample=True, temperature=self.options.temperature,
                top_k=0, top_p=1.0, eos_token_id=self.stop_ids, pad_token_id=self.processing_class.pad_token_id,
                use_cache=True,
            )
            prompt_ids, prompt_mask = inputs["input_ids"], inputs["attention_mask"]
            ids = unwrapped.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config)
            unwrapped.train(was_training)
            answers = ids[:, prompt_ids.shape[1] :]
            answer_mask = completion_mask(answers, self.stop_ids)
            return ids, torch.cat([prompt_mask, answer_mask.long()], dim=1), answer_mask

        def _reference_logprobs(self, model: Any, ids: Any, mask: Any, start: int) -> Any:
            with torch.no_grad():
                if self.ref_model is not None:
                    return self._forward(self.ref_model, ids, mask, start, values=False)[0]
                unwrapped = self.accelerator.unwrap_model(model)
                with unwrapped.disable_adapter():  # an adapter method: the base is the reference
                    return self._forward(model, ids, mask, start, values=False)[0]

        def _rollout(self, model: Any, inputs: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
            """Sample, score and compute advantages; also the policy's log-probs and values with gradients."""
            opts = self.options
            start = inputs["input_ids"].shape[1]
            ids, mask, answer_mask = self._sample(model, inputs)
            lengths = answer_mask.sum(dim=1).long().tolist()
            texts = [self.processing_class.decode(row[start : start + n], skip_special_tokens=True).strip()
                     for row, n in zip(ids, lengths)]
            scores, means = total_reward(self.reward_funcs, inputs["prompt_text"], texts, inputs["reference"])
            logprobs, values = self._forward(model, ids, mask, start, values=True)
            old_logprobs, old_values = logprobs.detach(), values.detach()
            kl = torch.zeros_like(old_logprobs)
            if opts.beta > 0:
                kl = (old_logprobs - self._reference_logprobs(model, ids, mask, start)) * answer_mask
            rewards = -opts.beta * kl
            last = (answer_mask.sum(dim=1).long() - 1).clamp(min=0)
            score = torch.tensor(scores, dtype=rewards.dtype, device=rewards.device)
            rewards[torch.arange(len(last), device=rewards.device), last] += score
            advantages, returns = gae(rewards, old_values, answer_mask, opts.gamma, opts.lam)
            rollout = {"input_ids": ids, "attention_mask": mask, "answer_mask": answer_mask, "start": start,
                       "old_logprobs": old_logprobs, "old_values": old_values, "returns": returns,
                       "advantages": whiten(advantages, answer_mask)}
            self._log("reward", float(score.mean()))
            for name, value in means.items():
                self._log(f"rewards/{name}", value)
            self._log("kl", float((kl.sum(dim=1)).mean()))
            self._log("answer_length", float(answer_mask.sum(dim=1).mean()))
            return rollout, logprobs, values

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            step = self.state.global_step
            if self._micro[0] != step:
                self._micro = (step, 0)
            micro = self._micro[1]
            self._micro = (step, micro + 1)
            if micro == 0:  # the Trainer zeroes the model's gradients after each step, not the value head's
                self.value_head.zero_grad(set_to_none=True)
            if step % self.options.num_iterations == 0:  # a new rollout
                if micro == 0 or self._rollout_step != step:
                    self._rollouts, self._rollout_step = [], step
                rollout, logprobs, values = self._rollout(model, inputs)
                self._rollouts.append(rollout)
            else:  # another optimisation pass over the answers of the last rollout
                rollout = self._rollouts[micro]
                logprobs, values = self._forward(model, rollout["input_ids"], rollout["attention_mask"],
                                                 rollout["start"], values=True)
            loss = self._ppo_loss(rollout, logprobs, values)
            return (loss, None) if return_outputs else loss

        def _ppo_loss(self, rollout: dict[str, Any], logprobs: Any, values: Any) -> Any:
            opts = self.options
            mask, advantages, returns = rollout["answer_mask"], rollout["advantages"], rollout["returns"]
            ratio = torch.exp(logprobs - rollout["old_logprobs"])
            clipped = torch.clamp(ratio, 1 - opts.clip_range, 1 + opts.clip_range)
            policy_loss = masked_mean(torch.max(-advantages * ratio, -advantages * clipped), mask)
            old_values = rollout["old_values"]
            values_clipped = old_values + torch.clamp(values - old_values, -opts.value_clip_range, opts.value_clip_range)
            value_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
            self._log("policy_loss", float(policy_loss.detach()))
            self._log("value_loss", float(value_loss.detach()))
            self._log("clip_fraction", float(masked_mean(((ratio - 1).abs() > opts.clip_range).float(), mask)))
            return policy_loss + opts.value_coef * value_loss

        def _log(self, key: str, value: float) -> None:
            self._logs[key].append(value)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:  # a training log: add the means since the last one
                logs.update({k: sum(v) / len(v) for k, v in self._logs.items() if v})
                self._logs.clear()
            super().log(logs, start_time)

    return PPOTrainer


def reference_model(model: Any, beta: float) -> Any:
    """A frozen copy of the model as it is now, or ``None``: no KL penalty, or an adapter method (whose base,
    adapters off, is the reference)."""
    if beta == 0 or (hasattr(model, "peft_config") and hasattr(model, "disable_adapter")):
        return None
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()


def disable_dropout(model: Any) -> None:
    """Dropout off: the log-probabilities of the rollout and of the update must come from the same function."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class PPOObjective:
    """PPO against the recipe's rewards (typically the reward model of an earlier stage)."""

    def __init__(self, options: PPOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from ftx.api import stop_token_ids

        opts = self.options
        from ftx_rewards.combine import build_rewards

        rewards = build_rewards(ctx, opts.rewards, opts.reward_model)  # unknown names fail here, before training
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RecipeError("objective ppo trains on one process; run it without --nproc-per-node "
                              "(or use objective rl or rloo, which run on several)")
        tokenizer = ctx.tokenizer
        train = ctx.train
        per_step = train.batch_size * train.grad_accum
        rows = features(prompt_rows(ctx, "ppo"), tokenizer, ctx.data_config.max_length - opts.max_completion_length)
        if len(rows) < per_step:
            raise RecipeError(f"objective ppo: {len(rows)} training prompts are fewer than one step's "
                              f"train.batch_size x train.grad_accum ({per_step}); lower train.batch_size")
        steps_per_pass = len(rows) // per_step * opts.num_iterations
        passes = math.ceil(train.max_steps / steps_per_pass) if train.max_steps else math.ceil(train.epochs)
        args = ctx.training_arguments(eval_strategy="no", num_train_epochs=1)
        disable_dropout(model)
        ref = reference_model(model, opts.beta)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        trainer = _make_trainer_class()(
            model=model,
            args=args,
            train_dataset=repeated_rows(rows, per_step, opts.num_iterations, passes, train.seed),
            data_collator=PromptCollator(pad_id),
            processing_class=tokenizer,
            options=opts,
            rewards=rewards,
            ref_model=ref,
            stop_ids=stop_token_ids(tokenizer, model),
        )
        ctx.echo(f"  ppo: {len(rows)} prompts, {per_step} per step, {opts.num_iterations} steps per rollout; "
                 "reference: " + ("none (beta = 0)" if opts.beta == 0 else "the base with adapters off"
                                  if ref is None else "frozen copy of the model")
                 + "; rewards " + ", ".join(f"{r.name} x{r.weight:g}" for r in rewards))
        result = ctx.fit(trainer)
        del ref
        return sampled_reward_figures(result, len(rows))


def features(rows: list[dict[str, Any]], tokenizer: Any, prompt_budget: int) -> list[dict[str, Any]]:
    """Each prompt rendered with the chat template and tokenised (cut from the start to ``prompt_budget`` tokens),
    with the text the rewards see (its last user turn) and the reference answer."""
    out = []
    for row in rows:
        text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        users = [m["content"] for m in row["prompt"] if m.get("role") == "user"]
        out.append({"prompt_ids": ids[-max(prompt_budget, 1):], "prompt_text": users[-1] if users else "",
                    "reference": row["reference"]})
    return out
