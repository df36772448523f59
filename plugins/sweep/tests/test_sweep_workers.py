"""Several ``ftx sweep`` workers share one study through ``--storage``: N trials in total, none run twice, and a
killed worker's trial is retried by another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ftx.testing import TINY_TEST_CONFIG

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "recipes" / "quickstart.toml"
TINY_CONFIG = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
TINY = [f"model.config={TINY_CONFIG}", "train.max_steps=3", "data.limit=60", "train.threads=1",
        "evaluation.forgetting=false", "evaluation.samples=0", 'evaluators=[{use = "loss"}]']


def _worker(storage: str, out: Path, trials: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ftx.cli", "sweep", str(QUICKSTART), "--param", "train.lr=loguniform(1e-4,3e-3)",
               "--trials", str(trials), "--metric", "loss", "--pruner", "none", "--storage", storage,
               "--heartbeat", "3", "-o", str(out), *[f"--set={o}" for o in TINY]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _study(storage: str):
    import optuna

    return optuna.load_study(study_name="ftx-sweep", storage=storage)


@pytest.mark.slow
@pytest.mark.long
def test_two_workers_share_the_trials_and_survive_a_killed_one(tmp_path, ftx_home):
    from optuna.trial import TrialState

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first, second = _worker(storage, tmp_path / "a", 3), _worker(storage, tmp_path / "b", 3)
    outputs = [w.communicate(timeout=900)[0] for w in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [o[-3000:] for o in outputs]
    trials = _study(storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3, outputs
    folders = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/trial-*"))
    assert len(folders) == 3 and {f.split("/")[1] for f in folders} == {"trial-0", "trial-1", "trial-2"}, folders
    assert all((tmp_path / f / "metrics.json").exists() for f in folders)
    assert sum("(the recipe as written)" in o for o in outputs) == 1  # one baseline, from the study's creator
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3, [o[-1500:] for o in outputs]

    # a third worker is killed during its trial; a fourth finishes the study and retries that trial
    killed = _worker(storage, tmp_path / "c", 5)
    deadline = time.monotonic() + 600
    while not any(t.state == TrialState.RUNNING for t in _study(storage).get_trials()):
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    rescuer = _worker(storage, tmp_path / "d", 5)
    output = rescuer.communicate(timeout=900)[0]
    assert rescuer.returncode == 0, output[-3000:]
    trials = _study(storage).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    stale = [t for t in trials if t.state == TrialState.FAIL]
    assert len(done) == 5 and len(stale) == 1 and stale[0].user_attrs.get("interrupted"), output[-3000:]
    retry = next(t for t in done if t.user_attrs.get("retry_of") == stale[0].number)
    assert retry.params == stale[0].params


def test_a_bad_storage_url_is_one_line(tmp_path):
    from click.testing import CliRunner
    from ftx.cli import main

    result = CliRunner().invoke(main, ["sweep", str(QUICKSTART), "--param", "train.lr=loguniform(1e-4,3e-3)",
                                       "--metric", "loss", "--storage", "nosuchdb://x", "-o", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert "--storage 'nosuchdb://x': cannot open the study database" in result.output
