"""RL from an SFT model raises the mean reward of greedy answers to held-out prompts: ``rl`` (GRPO), ``rloo``, ``ppo``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ftx.demo_data import prompt_rows, write_jsonl
from ftx.testing import TINY_TEST_CONFIG

REWARDS = '[{use = "similarity"}, {use = "exact-match"}]'
CONFIG = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
SHARED = """
[data]
format = "alpaca"
train = "tasks.jsonl"
eval = 0.05
max_length = 48
[method]
use = "full"
[train]
batch_size = 16
threads = 2
log_every = 10
"""


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory: pytest.TempPathFactory, ftx_home: Path) -> Path:
    """A folder with the prompts file and an SFT run on them (120 steps), shared by this module's RL tests."""
    from click.testing import CliRunner
    from ftx.cli import main

    folder = tmp_path_factory.mktemp("rl")
    write_jsonl(prompt_rows(600, seed=1, tasks=("copy", "reverse", "sort")), folder / "tasks.jsonl")
    (folder / "sft.toml").write_text(f"""
[model]
name = "builtin:tiny-llama"
config = {{{CONFIG}}}
[objective]
use = "sft"
[evaluation]
samples = 0
forgetting = false
{SHARED}max_steps = 120
lr = 2e-3
""", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(folder / "sft.toml"), "--output", str(folder / "sft")])
    assert result.exit_code == 0, result.output
    return folder


RL_OBJECTIVES = {  # objective table, steps, learning rate
    "rl": (f"{{use = \"rl\", rewards = {REWARDS}, num_generations = 4, max_completion_length = 12}}", 25, 5e-4),
    "rloo": (f"{{use = \"rloo\", rewards = {REWARDS}, num_generations = 4, max_completion_length = 12}}", 25, 5e-4),
    # batch_size counts prompts for ppo (one answer each); a new rollout every 2 steps. At lr 5e-4 and 4 steps
    # per rollout the policy drifted (KL 3 nats per answer) and the held-out reward fell 0.34 -> 0.17; measured
    # with these settings: 0.34 -> 0.42 (rl 0.34 -> 0.44, rloo 0.34 -> 0.42 in the same session)
    "ppo": (f"{{use = \"ppo\", rewards = {REWARDS}, max_completion_length = 12, num_iterations = 2}}", 24, 2e-4),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RL_OBJECTIVES))
def test_rl_objective_raises_held_out_reward_over_its_sft_model(name, sft_folder):
    from click.testing import CliRunner
    from ftx.cli import main

    objective, steps, lr = RL_OBJECTIVES[name]
    (sft_folder / f"{name}.toml").write_text(f"""
objective = {objective}
evaluators = [{{use = "reward", rewards = {REWARDS}, max_new_tokens = 12}}]
[model]
name = "sft/model"
[evaluation]
samples = 0
forgetting = false
{SHARED}max_steps = {steps}
lr = {lr}
""", encoding="utf-8")
    out = sft_folder / name
    result = CliRunner().invoke(main, ["run", str(sft_folder / f"{name}.toml"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["before"]["reward"], metrics["after"]["reward"]
    assert after["mean_reward"] > before["mean_reward"], (before, after)
    assert after["mean_similarity"] > before["mean_similarity"], (before, after)
    assert metrics["train"]["steps"] == steps and "last_sampled_reward" in metrics["train"]
