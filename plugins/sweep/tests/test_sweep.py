"""``ftx sweep``: search-space syntax, metric resolution, pruning, and a resumed 4-trial sweep on the quickstart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ftx.cli import main
from ftx.errors import RecipeError, RunError
from ftx.testing import TINY_TEST_CONFIG
from ftx_sweep.study import PruningReporter, load_summary, parse_param, parse_params, resolve_metric, toml_value

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "recipes" / "quickstart.toml"
TINY_CONFIG = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
TINY = [  # the quickstart shrunk to seconds per trial: test model, 4 steps, 10 held-out rows, loss only
    f"model.config={TINY_CONFIG}", "train.max_steps=4", "data.limit=100", "train.log_every=2",
    "train.eval_every=2", "evaluation.forgetting=false", "evaluation.samples=0", 'evaluators=[{use = "loss"}]',
]


@pytest.mark.parametrize("text,message", [
    ("train.lr", "expected KEY=DIST(ARGS)"),
    ("train.lr=gaussian(0,1)", "unknown distribution 'gaussian'; use one of loguniform, uniform, int, choice"),
    ("train.lr=loguniform(1e-3,1e-5)", "low (0.001) must be below high (1e-05)"),
    ("train.lr=loguniform(0,1e-3)", "loguniform needs a positive low bound"),
    ("train.lr=uniform(1)", "uniform takes 2 numbers: uniform(low, high)"),
    ("train.batch_size=int(4,32.5)", "int takes 2 or 3 integers"),
    ("train.batch_size=int(4,32,0)", "the step of int must be positive"),
    ("method.r=choice()", "choice needs at least one value"),
    ("method.r=choice(8,8)", "choice lists a value twice"),
])
def test_bad_param_syntax_names_the_param(text, message):
    with pytest.raises(RecipeError) as err:
        parse_param(text)
    assert f"--param {text}: {message}" in str(err.value)


def test_param_kinds_and_values():
    assert parse_param("train.lr=loguniform(1e-5, 1e-3)").args == (1e-5, 1e-3)
    assert parse_param("train.batch_size=int(4,32,4)").args == (4, 32, 4)
    assert parse_param("method.r=choice(8,16,32)").args == (8, 16, 32)
    assert parse_param("train.scheduler=choice(linear, cosine)").args == ("linear", "cosine")
    assert parse_param('train.scheduler=choice("linear","cosine")').args == ("linear", "cosine")
    with pytest.raises(RecipeError, match="train.lr is already searched by --param train.lr=uniform"):
        parse_params(["train.lr=uniform(0.1,0.2)", "train.lr=loguniform(1e-5,1e-3)"])
    assert toml_value(1e-05) == "1e-05" and toml_value("cosine") == '"cosine"' and toml_value(True) == "true"


def test_metric_names_resolve_to_metrics_json_paths():
    evaluators = ["exact-match", "loss"]
    exact = resolve_metric("exact-match", evaluators)
    assert exact.path == ("after", "exact-match", "exact_match") and exact.direction == "maximize"
    loss = resolve_metric("after.loss.loss", evaluators)
    assert loss.path == ("after", "loss", "loss") and loss.direction == "minimize"
    assert resolve_metric("loss.perplexity", evaluators).path == ("after", "loss", "perplexity")
    assert resolve_metric("loss", evaluators, "maximize").direction == "maximize"
    with pytest.raises(RecipeError, match=r"--metric rouge: not an evaluator of the recipe \(evaluators: exact-match, loss\)"):
        resolve_metric("rouge", evaluators)
    with pytest.raises(RunError, match=r"have no 'exact-match' under after \(it has: loss\)"):
        exact.value({"after": {"loss": {"loss": 1.0}}})
    assert exact.value({"after": {"exact-match": {"exact_match": 0.75}}}) == 0.75


def test_sweep_checks_every_param_against_the_recipe_before_training(ftx_home):
    result = CliRunner().invoke(main, [
        "sweep", str(QUICKSTART), "--param", "train.lr=loguniform(1e-5,1e-3)", "--param", "method.r=choice(8,16,32)",
        "--metric", "exact-match", "--trials", "4", "-o", "unused"])
    assert result.exit_code == 2
    assert "--param method.r=choice(8,16,32): with method.r = 8: method.r: unknown key" in result.output
    assert not Path("unused").exists()
    result = CliRunner().invoke(main, ["sweep", str(QUICKSTART), "--param", "train.lr=uniform(1e-5,1e-3)",
                                       "--metric", "bleu", "-o", "unused"])
    assert result.exit_code == 2 and "--metric bleu: not an evaluator of the recipe (evaluators: exact-match, loss)" in result.output


def test_sweep_commands_import_neither_torch_nor_optuna():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom ftx.cli import main\n"
            "for args in (['--help'], ['sweep', '--help'], ['runs', '--help'], ['compare', '--help']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'optuna', 'mlflow', 'tensorboard'}))\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pruning_reporter_feeds_validation_loss_in_the_study_direction():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for direction, later_loss, pruned in (("minimize", 3.0, True), ("maximize", 3.0, True), ("minimize", 0.5, False)):
        study = optuna.create_study(direction=direction, pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
        first = study.ask()
        PruningReporter(first, direction == "maximize", prune=True).ftx_log_metrics(None, 5, {"eval_loss": 1.0})
        study.tell(first, 1.0)
        second = study.ask()
        reporter = PruningReporter(second, direction == "maximize", prune=True)
        reporter.ftx_log_metrics(None, 5, {"loss": 9.0})  # training loss alone reports nothing
        if pruned:
            with pytest.raises(optuna.TrialPruned, match="validation loss 3 at step 5"):
                reporter.ftx_log_metrics(None, 5, {"eval_loss": later_loss})
        else:
            reporter.ftx_log_metrics(None, 5, {"eval_loss": later_loss})
        sign = -1 if direction == "maximize" else 1
        assert study.trials[1].intermediate_values == {5: sign * later_loss}


def _sweep(out: Path, trials: int):
    args = ["sweep", str(QUICKSTART), "--param", "train.lr=loguniform(1e-4,3e-3)", "--param", "train.batch_size=choice(8,32)",
            "--trials", str(trials), "--metric", "loss", "--prune-after", "2", "-o", str(out), "--seed", "7"]
    return CliRunner().invoke(main, args + [f"--set={o}" for o in TINY], catch_exceptions=False)


@pytest.mark.slow
def test_four_trial_sweep_resumes_after_a_kill_and_beats_the_recipe(tmp_path, ftx_home):
    import optuna

    out = tmp_path / "sweep"
    first = _sweep(out, 2)
    assert first.exit_code == 0, first.output
    assert [t["state"] for t in load_summary(out)["trials"]] == ["complete", "complete"]
    stamps = {n: (out / f"trial-{n}" / "metrics.json").stat().st_mtime_ns for n in (0, 1)}

    # a kill during trial 2: the study holds it as running, with a hopeless learning rate
    study = optuna.load_study(study_name="ftx-sweep", storage=f"sqlite:///{out / 'study.db'}")
    study.enqueue_trial({"train.lr": 1e-4, "train.batch_size": 8})
    killed = study.ask()
    killed.suggest_float("train.lr", 1e-4, 3e-3, log=True)
    killed.suggest_categorical("train.batch_size", [8, 32])

    second = _sweep(out, 4)
    assert second.exit_code == 0, second.output
    assert "resuming the sweep" in second.output and "2 of 4 trials finished; retrying 1 interrupted" in second.output
    summary = load_summary(out)
    states = {t["number"]: t["state"] for t in summary["trials"]}
    assert states[0] == states[1] == "complete" and states[2] == "interrupted"
    assert states[3] == "pruned" and states[4] in ("complete", "pruned")  # trial 3 retries trial 2's hopeless lr
    retry = summary["trials"][3]
    assert retry["retry_of"] == 2 and retry["params"] == {"train.lr": 1e-4, "train.batch_size": 8}
    assert stamps == {n: (out / f"trial-{n}" / "metrics.json").stat().st_mtime_ns for n in (0, 1)}  # not rerun
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-0", "trial-1", "trial-3", "trial-4"]

    # trial 0 is the recipe as written; the best is read back from the trials' own metrics.json
    baseline, best = summary["baseline"], summary["best"]
    assert baseline["number"] == 0 and baseline["params"] == {"train.lr": 1e-3, "train.batch_size": 32}
    losses = {t["number"]: json.loads((out / f"trial-{t['number']}" / "metrics.json").read_text())["after"]["loss"]["loss"]
              for t in summary["trials"] if t["state"] == "complete"}
    assert best["value"] == min(losses.values()) == losses[best["number"]]
    assert best["value"] <= baseline["value"]
    assert f"best: trial {best['number']}, after.loss.loss = {best['value']:.4g} (minimize)" in second.output
    assert "| trial | state | after.loss.loss | train.lr | train.batch_size | seconds |" in (out / "summary.md").read_text()

    # best.toml is the quickstart with the best values, and validates
    validated = CliRunner().invoke(main, ["validate", str(out / "best.toml")])
    assert validated.exit_code == 0, validated.output
    from ftx.api import read_toml

    best_recipe = read_toml(out / "best.toml")
    assert best_recipe["train"]["lr"] == best["params"]["train.lr"]
    assert best_recipe["train"]["batch_size"] == best["params"]["train.batch_size"]
    assert best_recipe["train"]["scheduler"] == "cosine" and best_recipe["data"]["train"] == str(REPO / "recipes" / "data" / "reverse.jsonl")

    # the folder holds a finished sweep: asking again runs nothing; other settings are refused
    again = _sweep(out, 4)
    assert again.exit_code == 0 and "4 of 4 trials finished" in again.output and "trial 5" not in again.output
    other = CliRunner().invoke(main, ["sweep", str(QUICKSTART), "--param", "train.lr=uniform(1e-4,3e-3)", "--metric", "loss",
                                      "-o", str(out), *[f"--set={o}" for o in TINY]])
    assert other.exit_code == 2 and "holds a sweep started with other settings (params:" in other.output
