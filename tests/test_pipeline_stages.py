"""Pipelines: [[stages]] validated per stage, run in order, stopped by a failure, resumed after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from ftx.demo_data import preference_rows, prompt_rows, write_jsonl
from ftx.pipeline import merge_stage
from ftx.testing import TINY_TEST_CONFIG

REPO = Path(__file__).resolve().parents[1]


def test_stage_tables_merge_or_replace():
    base = {
        "model": {"name": "builtin:tiny-llama", "pretrain_steps": 100, "dtype": "float32"},
        "train": {"lr": 1e-3, "batch_size": 8},
        "objective": {"use": "sft", "train_on": "last"},
        "evaluators": [{"use": "exact-match"}],
    }
    stage = {"name": "rl", "model": {"name": "stage:sft"}, "train": {"max_steps": 5},
             "objective": {"use": "rl", "rewards": [{"use": "exact-match"}]}, "evaluators": []}
    merged = merge_stage(base, stage)
    assert merged["model"] == {"name": "stage:sft", "dtype": "float32"}  # built-in-only keys dropped
    assert merged["train"] == {"lr": 1e-3, "batch_size": 8, "max_steps": 5}
    assert merged["objective"] == {"use": "rl", "rewards": [{"use": "exact-match"}]}
    assert merged["evaluators"] == [] and "name" not in merged
    assert base["train"] == {"lr": 1e-3, "batch_size": 8}  # the base is not modified


def test_validate_checks_every_stage_of_rlhf():
    from ftx.cli import main

    result = CliRunner().invoke(main, ["validate", str(REPO / "recipes" / "rlhf.toml")])
    assert result.exit_code == 0, result.output
    assert "3 stages" in result.output
    for line in ("stage sft:", "stage reward: model=stage:sft", "objective=reward", "stage rl:", "objective=rl"):
        assert line in result.output


def test_validate_names_the_stage_of_each_problem():
    from ftx.cli import main

    result = CliRunner().invoke(main, [
        "validate", str(REPO / "recipes" / "rlhf.toml"),
        "--set", 'stages.1.model.name="stage:rl"',          # a later stage
        "--set", "stages.0.objectiv.use=sft",                # a misspelled table
        "--set", "stages.2.objective.num_generations=1",     # a bad option of the rl objective
    ])
    assert result.exit_code == 2
    out = result.output
    assert "stages[0] (sft).objectiv: unknown table; did you mean 'objective'?" in out
    assert "stages[1] (reward): 'stage:rl' must name an earlier stage (earlier: sft)" in out
    assert "stages[2] (rl): objective.num_generations" in out


def _pipeline(tmp_path: Path, second_train: str) -> Path:
    write_jsonl(prompt_rows(40), tmp_path / "tasks.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x"}\n' * 10, encoding="utf-8")
    write_jsonl(preference_rows(40), tmp_path / "pairs.jsonl")
    config = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    text = f"""
[model]
name = "builtin:tiny-llama"
config = {{{config}}}
[data]
format = "alpaca"
train = "tasks.jsonl"
max_length = 48
[method]
use = "full"
[objective]
use = "sft"
[train]
max_steps = 2
batch_size = 4
threads = 2
[output]
dir = "out"

[[stages]]
name = "sft"

[[stages]]
name = "dpo"
model = {{name = "stage:sft"}}
data = {{format = "preference", train = "{second_train}"}}
objective = {{use = "dpo"}}
"""
    path = tmp_path / "pipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_failed_stage_stops_the_pipeline_and_resume_continues_after_the_last_finished(tmp_path):
    """--resume skips finished stages only while their recipe, and every stage before them, is unchanged."""
    from ftx.cli import main

    recipe = _pipeline(tmp_path, "bad.jsonl")
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(recipe)])
    assert first.exit_code != 0
    assert "stage 'dpo' failed" in first.output and "--resume" in first.output
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["status"] == "failed"
    assert summary["stages"]["sft"]["status"] == "done"
    assert summary["stages"]["dpo"]["status"] == "failed" and "missing field" in summary["stages"]["dpo"]["error"]
    sft_model = tmp_path / "out" / "stages" / "sft" / "model" / "model.safetensors"
    stamp = sft_model.stat().st_mtime_ns

    again = runner.invoke(main, ["run", str(recipe), "--resume", "--set", "stages.1.data.train=pairs.jsonl"])
    assert again.exit_code == 0, again.output
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["status"] == "done"
    assert summary["stages"]["sft"]["resumed"] is True
    assert summary["stages"]["dpo"]["status"] == "done"
    assert sft_model.stat().st_mtime_ns == stamp  # the finished stage was not run again
    lock = (tmp_path / "out" / "stages" / "dpo" / "recipe.lock.toml").read_text()
    assert str(tmp_path / "out" / "stages" / "sft" / "model") in lock  # "stage:sft" became its model folder

    # a finished stage whose recipe changed runs again, and so does every stage after it
    dpo_model = tmp_path / "out" / "stages" / "dpo" / "model" / "model.safetensors"
    dpo_stamp = dpo_model.stat().st_mtime_ns
    changed = runner.invoke(main, ["run", str(recipe), "--resume", "--set", "stages.1.data.train=pairs.jsonl",
                                   "--set", "stages.0.train.lr=0.001"])
    assert changed.exit_code == 0, changed.output
    assert "stage sft: finished earlier, but its recipe changed since it finished (train.lr)" in changed.output
    assert "stage dpo: finished earlier, but a stage before it ran again" in changed.output
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "resumed" not in summary["stages"]["sft"] and "resumed" not in summary["stages"]["dpo"]
    assert sft_model.stat().st_mtime_ns != stamp and dpo_model.stat().st_mtime_ns != dpo_stamp

    # and with nothing changed, both stand
    stamps = (sft_model.stat().st_mtime_ns, dpo_model.stat().st_mtime_ns)
    same = runner.invoke(main, ["run", str(recipe), "--resume", "--set", "stages.1.data.train=pairs.jsonl",
                                "--set", "stages.0.train.lr=0.001"])
    assert same.exit_code == 0, same.output
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["stages"]["sft"]["resumed"] is True and summary["stages"]["dpo"]["resumed"] is True
    assert (sft_model.stat().st_mtime_ns, dpo_model.stat().st_mtime_ns) == stamps


@pytest.mark.slow
def test_rlhf_recipe_runs_sft_reward_and_rl_in_one_command(tmp_path, ftx_home):
    """recipes/rlhf.toml as shipped, offline, with the model and steps shrunk for a test."""
    from ftx.cli import main

    config = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
    out = tmp_path / "rlhf"
    result = CliRunner().invoke(main, [
        "run", str(REPO / "recipes" / "rlhf.toml"), "--output", str(out),
        "--set", f"model.config={config}", "--set", "train.threads=2", "--set", "data.limit=200",
        "--set", "stages.0.train.max_steps=10",
        "--set", "stages.1.train.max_steps=5",
        "--set", "stages.2.train.max_steps=2", "--set", "stages.2.train.batch_size=8",
        "--set", "stages.2.objective.max_completion_length=8",
        "--set", "stages.2.evaluators.0.max_new_tokens=8", "--set", "stages.2.evaluators.0.limit=8",
        "--set", "stages.2.evaluators.1.limit=8",
        "--set", "stages.0.evaluators.0.limit=8",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["status"] == "done"
    assert [(n, s["objective"], s["status"]) for n, s in summary["stages"].items()] == [
        ("sft", "sft", "done"), ("reward", "reward", "done"), ("rl", "rl", "done")]
    assert "accuracy" in summary["stages"]["reward"]["after"]["preference"]
    assert "mean_reward" in summary["stages"]["rl"]["after"]["reward"]
    for stage in ("sft", "reward", "rl"):
        assert (out / "stages" / stage / "model" / "config.json").exists()
    reward_config = json.loads((out / "stages" / "reward" / "model" / "config.json").read_text())
    assert reward_config["architectures"] == ["LlamaForSequenceClassification"]
    assert "stage rl (rl): done" in result.output


@pytest.mark.slow
@pytest.mark.long
def test_rlhf_ppo_recipe_runs_its_rl_stage_on_ppo(tmp_path, ftx_home):
    """recipes/rlhf-ppo.toml as shipped (the PPO variant of rlhf.toml), shrunk like the test above."""
    from ftx.cli import main

    config = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
    out = tmp_path / "rlhf-ppo"
    result = CliRunner().invoke(main, [
        "run", str(REPO / "recipes" / "rlhf-ppo.toml"), "--output", str(out),
        "--set", f"model.config={config}", "--set", "train.threads=2", "--set", "data.limit=200",
        "--set", "stages.0.train.max_steps=10", "--set", "stages.0.evaluators.0.limit=8",
        "--set", "stages.1.train.max_steps=5",
        "--set", "stages.2.train.max_steps=4", "--set", "stages.2.train.batch_size=8",
        "--set", "stages.2.objective.max_completion_length=8",
        "--set", "stages.2.evaluators.0.max_new_tokens=8", "--set", "stages.2.evaluators.0.limit=8",
        "--set", "stages.2.evaluators.1.limit=8",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert [(n, s["objective"], s["status"]) for n, s in summary["stages"].items()] == [
        ("sft", "sft", "done"), ("reward", "reward", "done"), ("ppo", "ppo", "done")]
    ppo = json.loads((out / "stages" / "ppo" / "metrics.json").read_text())
    assert ppo["train"]["steps"] == 4 and "first_sampled_reward" in ppo["train"]
    assert "mean_reward-model" in ppo["after"]["reward"]
    assert not (out / "stages" / "ppo" / "model" / "value_head.pt").exists()  # the value head is not exported
