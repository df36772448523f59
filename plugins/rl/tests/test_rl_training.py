"""RL (GRPO) from an SFT model raises the mean reward of greedy answers to held-out prompts."""

from __future__ import annotations

import json

import pytest
from ftx.demo_data import prompt_rows, write_jsonl
from ftx.testing import TINY_TEST_CONFIG

REWARDS = '[{use = "similarity"}, {use = "exact-match"}]'


@pytest.mark.slow
def test_rl_stage_raises_held_out_reward_over_its_sft_model(tmp_path, ftx_home):
    from click.testing import CliRunner
    from ftx.cli import main

    write_jsonl(prompt_rows(600, seed=1, tasks=("copy", "reverse", "sort")), tmp_path / "tasks.jsonl")
    config = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    (tmp_path / "rl.toml").write_text(f"""
[model]
name = "builtin:tiny-llama"
config = {{{config}}}
[data]
format = "alpaca"
train = "tasks.jsonl"
eval = 0.05
max_length = 48
[method]
use = "full"
[objective]
use = "sft"
[train]
batch_size = 16
threads = 2
log_every = 10
[output]
dir = "out"

[[stages]]
name = "sft"
train = {{max_steps = 120, lr = 2e-3}}

[[stages]]
name = "rl"
model = {{name = "stage:sft"}}
objective = {{use = "rl", rewards = {REWARDS}, num_generations = 4, max_completion_length = 12}}
train = {{max_steps = 25, lr = 5e-4}}
evaluators = [{{use = "reward", rewards = {REWARDS}, max_new_tokens = 12}}]
""", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "rl.toml")])
    assert result.exit_code == 0, result.output
    rl = json.loads((tmp_path / "out" / "stages" / "rl" / "metrics.json").read_text())
    before, after = rl["before"]["reward"], rl["after"]["reward"]
    assert after["mean_reward"] > before["mean_reward"]
    assert after["mean_similarity"] > before["mean_similarity"]
    assert rl["train"]["steps"] == 25
