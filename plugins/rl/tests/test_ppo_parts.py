"""The pieces of the ppo objective that carry its arithmetic and its data layout, checked by hand."""

from __future__ import annotations

import pytest


def test_gae_with_lambda_one_is_the_return_minus_the_value_and_zero_beyond_the_answer():
    import torch
    from ftx_rl.ppo import gae

    rewards = torch.tensor([[0.0, 1.0, 9.0]])  # the 9 lies beyond the answer's end and must not count
    values = torch.tensor([[0.5, 0.25, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert returns.tolist() == [[1.0, 1.0, 0.0]]
    assert advantages.tolist() == [[0.5, 0.75, 0.0]]
    # lambda 0: one-step TD errors r_t + V_{t+1} - V_t
    advantages, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)
    assert advantages.tolist() == [[-0.25, 0.75, 0.0]]


def test_an_answer_ends_at_its_first_stop_token_which_it_keeps():
    import torch
    from ftx_rl.ppo import completion_mask

    answers = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [3, 2, 2, 4, 0]])
    assert completion_mask(answers, [2, 3]).tolist() == [
        [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_whitened_advantages_have_mean_zero_and_unit_spread_over_answer_tokens_only():
    import torch
    from ftx_rl.ppo import whiten

    values = torch.tensor([[1.0, 3.0, 100.0], [5.0, 7.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    out = whiten(values, mask)
    kept = out[mask.bool()]
    assert abs(float(kept.mean())) < 1e-6 and abs(float((kept**2).mean()) - 1.0) < 1e-4
    assert out[:, 2].tolist() == [0.0, 0.0]


def test_each_steps_prompts_repeat_once_per_ppo_epoch_and_a_partial_batch_is_dropped():
    from ftx_rl.ppo import repeated_rows

    rows = [{"i": i} for i in range(7)]
    laid = [r["i"] for r in repeated_rows(rows, per_step=3, repeats=2, passes=2, seed=1)]
    assert len(laid) == 2 * 2 * 2 * 3  # passes x batches per pass x repeats x prompts
    first_pass = laid[:12]
    assert first_pass[0:3] == first_pass[3:6] and first_pass[6:9] == first_pass[9:12]
    assert len(set(first_pass[0:3] + first_pass[6:9])) == 6  # two different batches, no prompt twice
    assert laid[12:] != first_pass  # the second pass is shuffled anew
    assert repeated_rows(rows, 3, 2, 2, seed=1) == repeated_rows(rows, 3, 2, 2, seed=1)


@pytest.mark.parametrize("bad", [{"clip_range": 0}, {"lam": 1.5}, {"num_iterations": 0}])
def test_ppo_options_are_validated_with_the_key_named(bad):
    from ftx.recipe.loader import validation_problems
    from ftx_rl import PPOOptions

    _, problems = validation_problems(PPOOptions, {"reward_model": "runs/reward", **bad}, "objective")
    assert len(problems) == 1 and str(problems[0]).startswith(f"objective.{next(iter(bad))}:")


def test_a_ppo_recipe_needs_a_reward():
    from ftx.recipe.loader import validation_problems
    from ftx_rl import PPOOptions

    _, problems = validation_problems(PPOOptions, {}, "objective")
    assert problems and "at least one reward" in str(problems[0])
